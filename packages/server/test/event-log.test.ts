import type { EventBody, SessionEvent } from "@flotilla/contracts";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDb } from "../../../test/support.ts";
import { migrate } from "../src/platform/db/migrate.ts";
import { createPool, type Db, withTx } from "../src/platform/db/pool.ts";
import { EventBus } from "../src/platform/events/bus.ts";
import { EventLog } from "../src/platform/events/log.ts";
import { createLogger } from "../src/platform/logger.ts";

// The event log on a real Postgres: one writer per session that groups what callers append at
// the same time into one statement, and must still give every caller exactly its own events, in
// call order, gap-free, with session_parts and the usage totals as one append at a time would.

let db: Db;
let bus: EventBus;
let log: EventLog;
let n = 0;

beforeAll(async () => {
  db = createPool(await createTestDb(), 8);
  await migrate(db, createLogger("silent"));
  await db.query(`
    insert into orgs (id, name) values ('org_1', 'o');
    insert into projects (id, org_id, repo) values ('prj_1', 'org_1', '/r');
    insert into shards (id, org_id, project_id, dir, runtime, network) values ('shd_1', 'org_1', 'prj_1', '/s', 'local', 'open');
    insert into workspaces (id, org_id, project_id, kind, repo, path, state_dir, base_ref, base_commit, shard_id)
      values ('wsp_1', 'org_1', 'prj_1', 'worktree', '/r', '/w', '/s', 'main', 'abc', 'shd_1');`);
  bus = new EventBus(db, "cp_test", createLogger("silent"));
  log = new EventLog(db, bus);
});
afterAll(async () => {
  await log?.idle();
  await db?.end();
});

async function newSession(): Promise<string> {
  const id = `ses_log${++n}`;
  await db.query(
    `insert into sessions (id, org_id, project_id, workspace_id, title, status, model, permission)
     values ($1, 'org_1', 'prj_1', 'wsp_1', 't', 'running', 'm', '{}')`,
    [id],
  );
  return id;
}

const part = fc.constantFrom("p1", "p2", "p3");
const bodyArb: fc.Arbitrary<EventBody> = fc.oneof(
  fc
    .record({ partId: part, delta: fc.string({ maxLength: 6 }) })
    .map(({ partId, delta }): EventBody => ({ type: "text.delta", data: { messageId: "m", partId, delta } })),
  fc
    .record({ partId: part, text: fc.string({ maxLength: 12 }) })
    .map(
      ({ partId, text }): EventBody => ({ type: "text.completed", data: { messageId: "m", partId, text } }),
    ),
  fc
    .record({
      partId: fc.constantFrom("t1", "t2"),
      status: fc.constantFrom("pending", "running", "completed"),
    })
    .map(
      ({ partId, status }): EventBody => ({
        type: "tool.updated",
        data: { messageId: "m", partId, callId: partId, tool: "bash", status: status as "running" },
      }),
    ),
  fc.record({ messageId: fc.constantFrom("m1", "m2"), input: fc.nat(100), cost: fc.nat(5) }).map(
    ({ messageId, input, cost }): EventBody => ({
      type: "usage",
      data: {
        messageId,
        model: "m",
        tokens: { input, output: 1, reasoning: 0, cacheRead: 0, cacheWrite: 0 },
        cost: cost / 100,
      },
    }),
  ),
);

/** session_parts as appending one body at a time leaves it (the model the statement must match). */
function partsModel(bodies: EventBody[]) {
  const rows = new Map<string, { kind: string; status: string | null; text_len: number }>();
  for (const b of bodies) {
    if (b.type === "text.delta") {
      const r = rows.get(b.data.partId);
      if (r) r.text_len += b.data.delta.length;
      else rows.set(b.data.partId, { kind: "text", status: "streaming", text_len: b.data.delta.length });
    } else if (b.type === "text.completed") {
      rows.set(b.data.partId, { kind: "text", status: "completed", text_len: b.data.text.length });
    } else if (b.type === "tool.updated") {
      const r = rows.get(b.data.partId);
      rows.set(b.data.partId, { kind: "tool", status: b.data.status, text_len: r?.text_len ?? 0 });
    } else if (b.type === "usage") {
      const r = rows.get(b.data.messageId);
      rows.set(b.data.messageId, { kind: "message", status: "completed", text_len: r?.text_len ?? 0 });
    }
  }
  return Object.fromEntries([...rows].sort(([a], [b]) => (a < b ? -1 : 1)));
}

describe("event log", () => {
  it("appends made at once each get their own events, in call order, gap-free; parts and usage as if one at a time", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(bodyArb, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 30 }),
        async (calls) => {
          const sid = await newSession();
          const published: SessionEvent[] = [];
          const off = bus.subscribe(sid, (e) => published.push(e));
          // All asked for before any is written: the queue groups them.
          const results = await Promise.all(calls.map((bodies) => log.append(sid, bodies)));
          off();
          const all = calls.flat();
          const stored = (await db.query("select * from events where session_id = $1 order by seq", [sid]))
            .rows;
          expect(stored.map((r) => Number(r.seq))).toEqual(all.map((_, i) => i + 1));
          expect(stored.map((r) => ({ type: r.type, data: r.data }))).toEqual(
            all.map((b) => ({ type: b.type, data: b.data })),
          );
          // Each caller got exactly its own bodies' events, as stored.
          let at = 0;
          for (const [i, bodies] of calls.entries()) {
            const mine = results[i]!;
            expect(mine.map((e) => e.seq)).toEqual(bodies.map((_, k) => at + k + 1));
            expect(mine.map((e) => [e.id, e.type])).toEqual(
              stored.slice(at, at + bodies.length).map((r) => [r.id, r.type]),
            );
            at += bodies.length;
          }
          expect(published.map((e) => e.seq)).toEqual(all.map((_, i) => i + 1));
          const parts = (
            await db.query(
              "select part_id, kind, status, text_len from session_parts where session_id = $1 order by part_id",
              [sid],
            )
          ).rows;
          expect(
            Object.fromEntries(
              parts.map((r) => [r.part_id, { kind: r.kind, status: r.status, text_len: r.text_len }]),
            ),
          ).toEqual(partsModel(all));
          const usage = all.flatMap((b) => (b.type === "usage" ? [b.data] : []));
          const s = (await db.query("select last_seq, tokens, cost from sessions where id = $1", [sid]))
            .rows[0];
          expect(Number(s.last_seq)).toBe(all.length);
          expect(s.tokens.input).toBe(usage.reduce((a, u) => a + u.tokens.input, 0));
          expect(s.cost).toBeCloseTo(
            usage.reduce((a, u) => a + u.cost, 0),
            9,
          );
        },
      ),
      { numRuns: 25 },
    );
  });

  it("groups a burst: appends asked for while one is written share the next statement", async () => {
    const sid = await newSession();
    const delta = (i: number): EventBody[] => [
      { type: "text.delta", data: { messageId: "m", partId: "p", delta: `${i} ` } },
    ];
    await Promise.all(Array.from({ length: 200 }, (_, i) => log.append(sid, delta(i))));
    // One statement, one transaction start time: distinct `at` values count the statements.
    const { rows } = await db.query(
      "select count(distinct at)::int as statements, count(*)::int as events from events where session_id = $1",
      [sid],
    );
    expect(rows[0].events).toBe(200);
    expect(rows[0].statements).toBeLessThan(10);
  });

  it("work run alone keeps its place: after what was appended before it, before what is appended after", async () => {
    const sid = await newSession();
    const d = (x: string): EventBody[] => [
      { type: "text.delta", data: { messageId: "m", partId: "p", delta: x } },
    ];
    const first = log.append(sid, d("a"));
    const middle = log.alone(sid, () =>
      withTx(db, (tx) =>
        log.appendTx(tx, sid, [{ type: "session.status", data: { status: "idle" } }], { status: "idle" }),
      ),
    );
    const last = log.append(sid, d("b"));
    const [a, m, b] = await Promise.all([first, middle, last]);
    expect([a[0]!.seq, m[0]!.seq, b[0]!.seq]).toEqual([1, 2, 3]);
    expect(m[0]!.type).toBe("session.status");
  });

  it("an append to a session that is gone fails, and only that session's queue hears of it", async () => {
    const sid = await newSession();
    const d: EventBody[] = [{ type: "text.delta", data: { messageId: "m", partId: "p", delta: "x" } }];
    const [gone, ok] = await Promise.allSettled([log.append("ses_missing", d), log.append(sid, d)]);
    expect(gone.status).toBe("rejected");
    expect(String((gone as PromiseRejectedResult).reason)).toMatch(/vanished/);
    expect(ok.status).toBe("fulfilled");
    const stored = await db.query("select count(*)::int as n from events where session_id = 'ses_missing'");
    expect(stored.rows[0].n).toBe(0);
    await expect(log.flushed(sid)).resolves.toBeUndefined();
  });
});
