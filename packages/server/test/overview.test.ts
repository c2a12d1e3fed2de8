import { FlotillaClient, type Overview } from "@flotilla/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  collectUntil,
  makeRepo,
  startTestServer,
  type TestServer,
  untilTurnFinished,
  waitFor,
} from "../../../test/support.ts";
import { readOverview } from "../src/metrics/overview.ts";
import { scenario } from "./scenario.ts";

let t: TestServer;
beforeAll(async () => {
  // One task slot: a hanging task holds it, so the next one stays queued for the queue counts.
  t = await startTestServer({ scenario, scheduler: { maxConcurrent: 1 } });
});
afterAll(async () => {
  await t?.close();
});

const utcMidnight = (d: Date) => new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));

async function orgId(): Promise<string> {
  const { rows } = await t.server.services.db.query("select id from orgs");
  expect(rows).toHaveLength(1);
  return rows[0].id;
}

async function settled(id: string, states: string[]) {
  return waitFor(
    async () => {
      const task = await t.client.tasks.get(id);
      return states.includes(task.state) ? task : undefined;
    },
    90_000,
    `task ${id} to reach ${states.join("|")}`,
  );
}

describe("GET /overview", () => {
  it("needs a credential; a member token reads it", async () => {
    const res = await fetch(`${t.url}/overview`);
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("unauthorized");
    const bad = await fetch(`${t.url}/overview`, { headers: { authorization: "Bearer flt_nope" } });
    expect(bad.status).toBe(401);
    const member = await t.client.tokens.create("overview reader", "member");
    const o = await new FlotillaClient({ baseUrl: t.url, token: member.token }).overview();
    expect(o.sessions.running).toBe(0);
  });

  it("reads zeros for an organisation with nothing in it, with today starting at 00:00 UTC", async () => {
    const before = new Date();
    const o = await t.client.overview();
    expect(Date.parse(o.at)).toBeGreaterThanOrEqual(before.getTime() - 1000);
    expect(o.since).toBe(utcMidnight(new Date(o.at)).toISOString());
    expect(o.sessions).toEqual({
      queued: 0,
      provisioning: 0,
      idle: 0,
      running: 0,
      waiting_permission: 0,
      interrupted: 0,
      failed: 0,
    });
    expect(Object.values(o.tasks).every((n) => n === 0)).toBe(true);
    expect(o.queue).toEqual({ depth: 0, ready: 0 });
    expect(o.today).toEqual({
      tokens: { input: 0, output: 0, reasoning: 0, cacheRead: 0, cacheWrite: 0 },
      cost: 0,
      messages: 0,
      failedTasks: 0,
      failedSessions: 0,
    });
    expect(o.failures).toEqual([]);
  });

  it("counts a finished session as idle and sums today's tokens and cost from its usage events", async () => {
    const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "write hello please" });
    await collectUntil(t.client, s.id, untilTurnFinished(1));
    const done = await t.client.sessions.get(s.id);
    expect(done.usage.tokens.input).toBeGreaterThan(0);

    const o = await t.client.overview();
    expect(o.sessions.idle).toBe(1);
    expect(o.sessions.running).toBe(0);
    // The only session of the day: its running total and today's sum of its usage events agree.
    expect(o.today.tokens).toEqual(done.usage.tokens);
    expect(o.today.cost).toBeCloseTo(done.usage.cost, 9);
    expect(o.today.messages).toBeGreaterThanOrEqual(1);
    expect(o.harnesses.items.length).toBeGreaterThanOrEqual(1);
    for (const h of o.harnesses.items) {
      expect(h.id).toMatch(/^hrn_/);
      expect(["starting", "ready", "stopping"]).toContain(h.state);
    }
    expect(o.harnesses.items.some((h) => h.projectId === done.projectId && h.repo === done.repo)).toBe(true);
    expect(o.harnesses.totalRssBytes).toBe(o.harnesses.items.reduce((a, h) => a + (h.rssBytes ?? 0), 0));

    // The scripted provider has no prices, so append a priced usage through the real event log.
    await t.server.services.events.append(s.id, [
      {
        type: "usage",
        data: {
          messageId: "msg_overview_priced",
          model: "scripted/scripted-1",
          tokens: { input: 1000, output: 200, reasoning: 30, cacheRead: 4, cacheWrite: 5 },
          cost: 0.25,
        },
      },
    ]);
    const priced = await t.client.overview();
    expect(priced.today.cost).toBeCloseTo(o.today.cost + 0.25, 9);
    expect(priced.today.tokens).toEqual({
      input: o.today.tokens.input + 1000,
      output: o.today.tokens.output + 200,
      reasoning: o.today.tokens.reasoning + 30,
      cacheRead: o.today.tokens.cacheRead + 4,
      cacheWrite: o.today.tokens.cacheWrite + 5,
    });
    expect(priced.today.messages).toBe(o.today.messages + 1);
    // And the session row's running total moved with it: both read the same events.
    expect((await t.client.sessions.get(s.id)).usage.cost).toBeCloseTo(done.usage.cost + 0.25, 9);

    // Tomorrow (UTC) none of it is today's any more; what is live still counts.
    const tomorrow = await readOverview(
      t.server.services.db,
      await orgId(),
      new Date(Date.now() + 86_400_000),
    );
    expect(tomorrow.today.cost).toBe(0);
    expect(tomorrow.today.tokens.input).toBe(0);
    expect(tomorrow.today.messages).toBe(0);
    expect(tomorrow.sessions.idle).toBe(1);
  });

  it("lists a failed turn and a failed task among recent failures, newest first, with their errors", async () => {
    const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "fail auth now" });
    await collectUntil(t.client, s.id, untilTurnFinished(1));
    const { task } = await t.client.tasks.submit({
      repo: makeRepo(),
      prompt: "fail auth now\nsecond line",
      maxAttempts: 1,
    });
    const failed = await settled(task.id, ["failed", "dead"]);

    const o = await t.client.overview();
    const byId = new Map(o.failures.map((f) => [f.id, f]));
    expect(byId.get(s.id)).toMatchObject({
      kind: "session",
      title: "fail auth now",
      state: "idle",
      error: { message: expect.stringMatching(/invalid api key/) },
    });
    expect(byId.get(task.id)).toMatchObject({
      kind: "task",
      title: "fail auth now",
      state: failed.state,
      error: { message: expect.stringMatching(/invalid api key/) },
      at: failed.finishedAt,
    });
    // The task ran as a session of its own, whose turn failed too.
    expect(byId.get(failed.sessionId!)).toMatchObject({ kind: "session" });
    // The hello session did not fail: only these three are listed.
    expect(o.failures).toHaveLength(3);
    const ats = o.failures.map((f) => f.at);
    expect(ats).toEqual([...ats].sort().reverse());
    expect(o.failures.every((f) => f.error !== null)).toBe(true);
    expect(o.today.failedTasks).toBe(1);
    expect(o.tasks[failed.state as "failed" | "dead"]).toBe(1);
    expect(o.today.failedSessions).toBe(2);
    // A failed turn leaves the session idle (send a message to go on): counted as idle, not failed.
    expect(o.sessions.failed).toBe(0);
    expect(o.sessions.idle).toBe(3);
  });

  it("counts running and queued tasks and the queue's depth while one task holds the only slot", async () => {
    const hang = (
      await t.client.tasks.submit({ repo: makeRepo(), prompt: "hang forever", timeoutMs: 120_000 })
    ).task;
    await settled(hang.id, ["running"]);
    const next = (await t.client.tasks.submit({ repo: makeRepo(), prompt: "write hello please" })).task;
    expect(next.state).toBe("queued");

    const o = await waitFor(
      async () => {
        const o = await t.client.overview();
        return o.sessions.running === 1 ? o : undefined;
      },
      60_000,
      "the hanging task's session to run",
    );
    expect(o.tasks.running).toBe(1);
    expect(o.tasks.queued).toBe(1);
    expect(o.queue).toEqual({ depth: 1, ready: 1 });

    await t.client.tasks.cancel(next.id);
    await t.client.tasks.cancel(hang.id);
    await settled(hang.id, ["cancelled"]);
    const after: Overview = await t.client.overview();
    expect(after.tasks.running).toBe(0);
    expect(after.queue).toEqual({ depth: 0, ready: 0 });
    expect(after.tasks.cancelled).toBe(2);
    // Cancelled is not a failure.
    expect(after.failures.some((f) => f.id === hang.id || f.id === next.id)).toBe(false);
  });
});

describe("GET /sessions?q=", () => {
  it("finds sessions by title or repository, in any case, with no wildcards", async () => {
    const repo = makeRepo();
    const s = await t.client.sessions.create({ repo, prompt: "remember the codeword: Zebra_42" });
    await collectUntil(t.client, s.id, untilTurnFinished(1));
    const ids = async (q: string, status?: "idle" | "running") =>
      (await t.client.sessions.list({ q, ...(status ? { status } : {}) })).items.map((x) => x.id);
    expect(await ids("CODEWORD: zebra_42")).toEqual([s.id]);
    expect(await ids(repo.split("/").at(-1)!.toUpperCase())).toEqual([s.id]);
    expect(await ids("zebra_42", "running")).toEqual([]);
    expect(await ids("zebra_42", "idle")).toEqual([s.id]);
    // % and _ are plain characters, not LIKE patterns.
    expect(await ids("%")).toEqual([]);
    expect(await ids("zebra%42")).toEqual([]);
    // Blank means no filter.
    expect((await ids("  ")).length).toBeGreaterThan(1);
  });
});

describe("GET /harnesses", () => {
  it("lists the caller's org's harnesses and the warm ones, never another org's", async () => {
    const db = t.server.services.db;
    const own = await t.client.sessions.create({ repo: makeRepo(), prompt: "hello" });
    await collectUntil(t.client, own.id, untilTurnFinished(1));
    // Another org with a live harness of its own, made directly: the API has no way to make orgs.
    await db.query("insert into orgs (id, name) values ('org_other', 'other')");
    await db.query(
      "insert into shards (id, org_id, dir, runtime, network) values ('shd_other', 'org_other', '/nonexistent', 'local', 'open')",
    );
    await db.query(
      "insert into harnesses (id, driver, state, run_dir, shard_id) values ('hrn_other', 'local', 'ready', '/nonexistent', 'shd_other')",
    );
    try {
      const listed = (await t.client.harnesses()).map((h) => h.id);
      expect(listed).not.toContain("hrn_other");
      const ownShard = (await t.client.sessions.get(own.id)).shardId;
      expect((await t.client.harnesses()).some((h) => h.shardId === ownShard)).toBe(true);
    } finally {
      await db.query("delete from harnesses where id = 'hrn_other'");
      await db.query("delete from shards where id = 'shd_other'");
      await db.query("delete from orgs where id = 'org_other'");
    }
  });
});
