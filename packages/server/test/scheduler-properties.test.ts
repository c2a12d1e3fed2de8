import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDb, makeRepo, tempDir } from "../../../test/support.ts";
import { loadConfig } from "../src/config/config.ts";
import { DEFAULT_ORG, TokenService } from "../src/identity/tokens.ts";
import { migrate } from "../src/platform/db/migrate.ts";
import { createPool, type Db } from "../src/platform/db/pool.ts";
import { createLogger } from "../src/platform/logger.ts";
import { claimBatch, claimNext, type Limits } from "../src/tasks/scheduler.ts";
import { TaskService } from "../src/tasks/tasks.ts";

// Invariants of the claim step, checked on the real database with many replicas claiming at once.

let db: Db;
const tokens: string[] = [];
const projects = ["prj_a", "prj_b", "prj_c"];

beforeAll(async () => {
  db = createPool(await createTestDb(), 12);
  await migrate(db, createLogger("silent"));
  const ts = new TokenService(db);
  await ts.ensureDefaultOrg();
  for (const n of ["one", "two"]) tokens.push((await ts.create(DEFAULT_ORG, n, "member")).info.id);
  for (const p of projects)
    await db.query("insert into projects (id, org_id, repo) values ($1, $2, $3)", [
      p,
      DEFAULT_ORG,
      `/repo/${p}`,
    ]);
});
afterAll(async () => {
  await db?.end();
});

interface Spec {
  project: number;
  token: number;
  priority: number;
}

async function reset(specs: Spec[]): Promise<string[]> {
  await db.query("truncate task_history, task_attempts, tasks cascade");
  const ids: string[] = [];
  for (const [i, s] of specs.entries()) {
    const id = `tsk_${String(i).padStart(26, "0")}`;
    ids.push(id);
    // created_at spaced out so "oldest first" is well defined.
    await db.query(
      `insert into tasks (id, org_id, project_id, token_id, repo, base_ref, prompt, model, permission, priority, timeout_ms, max_attempts, state, created_at)
       values ($1, $2, $3, $4, 'r', 'HEAD', 'p', 'm/m', '"allow"', $5, 60000, 3, 'queued', now() - make_interval(secs => $6))`,
      [id, DEFAULT_ORG, projects[s.project], tokens[s.token], s.priority, 1000 - i],
    );
  }
  return ids;
}

async function snapshot() {
  const { rows } = await db.query("select id, project_id, token_id, priority, state, created_at from tasks");
  return rows;
}

function checkLimits(rows: { state: string; project_id: string; token_id: string }[], limits: Limits) {
  const running = rows.filter((r) => r.state === "running");
  expect(running.length).toBeLessThanOrEqual(limits.maxConcurrent);
  for (const p of projects)
    expect(running.filter((r) => r.project_id === p).length).toBeLessThanOrEqual(limits.perProject);
  for (const t of tokens)
    expect(running.filter((r) => r.token_id === t).length).toBeLessThanOrEqual(limits.perToken);
}

const specArb = fc.record({
  project: fc.integer({ min: 0, max: 2 }),
  token: fc.integer({ min: 0, max: 1 }),
  priority: fc.integer({ min: -1, max: 1 }),
});
const limitsArb = fc.record({
  maxConcurrent: fc.integer({ min: 1, max: 6 }),
  perProject: fc.integer({ min: 1, max: 4 }),
  perToken: fc.integer({ min: 1, max: 5 }),
});
// An operation: several replicas claim at once (each up to `batch` tasks), or one running task finishes.
const opArb = fc.oneof(
  fc.record({ claim: fc.integer({ min: 1, max: 5 }), batch: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ finish: fc.nat() }),
);

describe("scheduler claim invariants (property-based, real Postgres)", () => {
  it("limits are never exceeded and no task runs twice, whatever replicas race", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(specArb, { minLength: 1, maxLength: 25 }),
        limitsArb,
        fc.array(opArb, { minLength: 1, maxLength: 12 }),
        async (specs, limits, ops) => {
          await reset(specs);
          for (const op of ops) {
            if ("claim" in op) {
              const claimed = await Promise.all(
                Array.from({ length: op.claim }, (_, i) =>
                  claimBatch(db, `replica-${i}`, limits, 60_000, op.batch),
                ),
              );
              const ids = claimed.flat().map((c) => c.task.id);
              expect(new Set(ids).size).toBe(ids.length); // no task claimed twice in one race
            } else {
              const running = (await snapshot()).filter((r) => r.state === "running");
              const r = running[op.finish % Math.max(1, running.length)];
              if (r) {
                await db.query("update tasks set state = 'succeeded' where id = $1", [r.id]);
                await db.query(
                  "update task_attempts set finished_at = now() where task_id = $1 and finished_at is null",
                  [r.id],
                );
              }
            }
            const rows = await snapshot();
            checkLimits(rows, limits);
            const open = await db.query(
              "select task_id, count(*)::int as c from task_attempts where finished_at is null group by task_id having count(*) > 1",
            );
            expect(open.rows).toEqual([]);
            // Each running task holds one slot of each of its three limits, and nothing else holds one.
            const held = await db.query(
              `select t.id, t.state, count(s.idx)::int as slots from tasks t
                 left join claim_slots s on s.task_id = t.id group by t.id, t.state`,
            );
            for (const r of held.rows) expect([r.id, r.slots]).toEqual([r.id, r.state === "running" ? 3 : 0]);
          }
        },
      ),
      { numRuns: 30 },
    );
  });

  it("a batch claims the tasks that as many single claims one after another would, in their order", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(specArb, { minLength: 1, maxLength: 20 }),
        limitsArb,
        fc.integer({ min: 1, max: 8 }),
        async (specs, limits, k) => {
          await reset(specs);
          const singles: string[] = [];
          for (let i = 0; i < k; i++) {
            const c = await claimNext(db, "replica", limits, 60_000);
            if (!c) break;
            singles.push(c.task.id);
          }
          await reset(specs);
          const batch = await claimBatch(db, "replica", limits, 60_000, k);
          expect(batch.map((c) => c.task.id)).toEqual(singles);
          expect(batch.map((c) => c.n)).toEqual(batch.map(() => 1));
          checkLimits(await snapshot(), limits);
        },
      ),
      { numRuns: 40 },
    );
  });

  it("each claim takes the highest priority, then the least-served project, then the oldest eligible task", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(specArb, { minLength: 1, maxLength: 20 }),
        limitsArb,
        async (specs, limits) => {
          await reset(specs);
          for (;;) {
            const before = await snapshot();
            const running = before.filter((r) => r.state === "running");
            const count = (key: "project_id" | "token_id", v: string) =>
              running.filter((r) => r[key] === v).length;
            const eligible =
              running.length < limits.maxConcurrent
                ? before.filter(
                    (r) =>
                      r.state === "queued" &&
                      count("project_id", r.project_id) < limits.perProject &&
                      count("token_id", r.token_id) < limits.perToken,
                  )
                : [];
            const c = await claimNext(db, "replica", limits, 60_000);
            if (!c) {
              expect(eligible).toEqual([]); // nothing eligible was left behind
              return;
            }
            const best = Math.max(...eligible.map((r) => r.priority));
            expect(c.task.priority).toBe(best);
            const top = eligible.filter((r) => r.priority === best);
            const least = Math.min(...top.map((r) => count("project_id", r.project_id)));
            expect(count("project_id", c.task.project_id)).toBe(least);
            const fairest = top.filter((r) => count("project_id", r.project_id) === least);
            const oldest = fairest.reduce((a, b) => (a.created_at <= b.created_at ? a : b));
            expect(c.task.id).toBe(oldest.id);
          }
        },
      ),
      { numRuns: 30 },
    );
  });

  it("a flood from one project does not starve another", async () => {
    const limits = { maxConcurrent: 4, perProject: 4, perToken: 4 };
    // Raced many times over: two claimers that read the running counts and the queue at different
    // moments once gave the flood both claims (a commit fell between the reads).
    for (let round = 0; round < 40; round++) {
      await reset([
        ...Array.from({ length: 50 }, () => ({ project: 0, token: 0, priority: 0 })),
        { project: 1, token: 1, priority: 0 },
      ]);
      const first = await Promise.all([
        claimNext(db, "a", limits, 60_000),
        claimNext(db, "b", limits, 60_000),
      ]);
      // The lone task of the second project is among the first two claims, though 50 older tasks wait.
      expect({ round, projects: first.map((c) => c!.task.project_id).sort() }).toEqual({
        round,
        projects: ["prj_a", "prj_b"],
      });
    }
  });

  it("idempotency keys deduplicate concurrent submits", async () => {
    const home = tempDir("props");
    const config = loadConfig({
      env: { FLOTILLA_HOME: home },
      overrides: { defaultModel: "scripted/scripted-1" },
    });
    const svc = new TaskService(db, config);
    const repo = makeRepo();
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.constantFrom("k1", "k2", "k3", undefined), { minLength: 1, maxLength: 12 }),
        async (keys) => {
          await db.query("truncate task_history, task_attempts, tasks cascade");
          const principal = { orgId: DEFAULT_ORG, tokenId: tokens[0]!, role: "member" as const };
          const results = await Promise.all(
            keys.map((k) => svc.submit({ repo, prompt: "p", idempotencyKey: k }, principal)),
          );
          const distinctKeys = new Set(keys.filter(Boolean));
          const withoutKey = keys.filter((k) => k === undefined).length;
          const { rows } = await db.query("select idempotency_key from tasks");
          expect(rows).toHaveLength(distinctKeys.size + withoutKey);
          for (const k of distinctKeys) {
            const ids = new Set(results.filter((_, i) => keys[i] === k).map((r) => r.task.id));
            expect(ids.size).toBe(1);
            expect(results.filter((r, i) => keys[i] === k && r.created)).toHaveLength(1);
          }
        },
      ),
      { numRuns: 20 },
    );
  });
});
