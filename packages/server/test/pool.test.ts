import { afterEach, describe, expect, it } from "vitest";
import {
  collectUntil,
  makeRepo,
  startTestServer,
  type TestServer,
  untilTurnFinished,
  waitFor,
} from "../../../test/support.ts";
import { scenario } from "./scenario.ts";

let t: TestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

const harnessOf = async (server: TestServer, shardId: string) =>
  (await server.client.harnesses()).filter((h) => h.shardId === shardId && h.state === "ready");

describe("harness pool", () => {
  it("sessions of one project share a harness; past the cap a new shard gets its own; memory is sampled", async () => {
    t = await startTestServer({ scenario, pool: { workspacesPerHarness: 2, tickMs: 300 } });
    const repo = makeRepo();
    const a = await t.client.sessions.create({ repo, prompt: "hang a" });
    const b = await t.client.sessions.create({ repo, prompt: "hang b" });
    const c = await t.client.sessions.create({ repo, prompt: "hang c" });
    for (const s of [a, b, c]) await collectUntil(t.client, s.id, (e) => e.type === "text.delta");
    expect(b.shardId).toBe(a.shardId);
    expect(c.shardId).not.toBe(a.shardId);
    const shared = await harnessOf(t, a.shardId);
    expect(shared).toHaveLength(1);
    const sampled = await waitFor(
      async () => {
        const h = (await harnessOf(t!, a.shardId))[0];
        return h && h.activeSessions === 2 && (h.rssBytes ?? 0) > 50 * 1024 * 1024 ? h : undefined;
      },
      20_000,
      "harness stats sampled",
    );
    expect(sampled.sessionsServed).toBe(2);
    expect(sampled.projectId).toBe(a.projectId);
    // Both sessions stream through the one harness, each into its own log.

    // Stopping "if idle" re-checks as it stops, and whoever asks for the shard's harness meanwhile
    // waits for the outcome: a busy harness is kept (and handed out), an idle one stopped, and the
    // asker gets a new one, never the harness being stopped.
    const m = t.server.services.harnesses;
    const shardOfSession = async (id: string) => {
      const { rows } = await t!.server.services.db.query(
        "select sh.id, sh.dir, sh.runtime, sh.network from sessions s join workspaces w on w.id = s.workspace_id join shards sh on sh.id = w.shard_id where s.id = $1",
        [id],
      );
      return rows[0];
    };
    const [shardA, shardC] = [await shardOfSession(a.id), await shardOfSession(c.id)];
    const busy = m.forShard(a.shardId)!;
    // Asked for in the same tick as the stop begins: while it checks, before it decides.
    const kept = m.stopIfIdle(busy, "test: busy");
    const handedBusy = await m.ensure(shardA);
    expect(await kept).toBe(false);
    expect(handedBusy).toBe(busy);
    await t.client.sessions.abort(c.id);
    const idle = m.forShard(c.shardId)!;
    const stopping = m.stopIfIdle(idle, "test: idle");
    const handedIdle = m.ensure(shardC);
    expect(await stopping).toBe(true);
    const fresh = await handedIdle;
    expect(fresh.id).not.toBe(idle.id);
    expect(m.forShard(c.shardId)).toBe(fresh);
    const states = new Map((await t.client.harnesses()).map((h) => [h.id, h.state]));
    expect([states.get(idle.id), states.get(fresh.id)]).toEqual(["stopped", "ready"]);
    for (const s of [a, b]) await t.client.sessions.abort(s.id);
  });

  it("a warm harness takes the first session at once, and the pool warms another", async () => {
    t = await startTestServer({ scenario, pool: { warm: 1, tickMs: 300 } });
    const warm = await waitFor(
      async () => (await t!.client.harnesses()).find((h) => h.state === "ready" && h.projectId === null),
      30_000,
      "warm harness",
    );
    const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "say hi" });
    expect(s.shardId).toBe(warm.shardId);
    const events = await collectUntil(t.client, s.id, untilTurnFinished(1));
    const ready = events.find((e) => e.type === "harness.state" && e.data.state === "ready");
    expect(ready?.type === "harness.state" && ready.data.harnessId).toBe(warm.id);
    expect(events.some((e) => e.type === "harness.state" && e.data.state === "starting")).toBe(false);
    await waitFor(
      async () =>
        (await t!.client.harnesses()).find(
          (h) => h.state === "ready" && h.projectId === null && h.id !== warm.id,
        ),
      30_000,
      "a new warm harness",
    );
  });

  it("stops an idle harness, and a later message resumes the session on a new one with its memory", async () => {
    t = await startTestServer({ scenario, pool: { idleMs: 1000, tickMs: 300 } });
    const s = await t.client.sessions.create({
      repo: makeRepo(),
      prompt: "remember the codeword: the codeword is EGRET",
    });
    await collectUntil(t.client, s.id, untilTurnFinished(1));
    const [h] = await harnessOf(t, s.shardId);
    const stopped = await waitFor(
      async () => (await t!.client.harnesses()).find((x) => x.id === h!.id && x.state === "stopped"),
      20_000,
      "idle stop",
    );
    expect(stopped.reason).toMatch(/idle/);
    await t.client.sessions.send(s.id, { text: "what was the codeword?" });
    const events = await collectUntil(t.client, s.id, untilTurnFinished(2));
    const last = events.slice(events.findLastIndex((e) => e.type === "turn.started"));
    expect(
      last.find((e) => e.type === "text.completed"),
      JSON.stringify(last.map((e) => [e.type, e.data])),
    ).toMatchObject({
      data: { text: "The codeword was EGRET." },
    });
  });

  it("recycles a harness after it served its quota of sessions, once idle", async () => {
    t = await startTestServer({ scenario, pool: { maxSessionsPerHarness: 1, tickMs: 300 } });
    const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "say hi" });
    await collectUntil(t.client, s.id, untilTurnFinished(1));
    const [h] = await harnessOf(t, s.shardId);
    const stopped = await waitFor(
      async () => (await t!.client.harnesses()).find((x) => x.id === h!.id && x.state === "stopped"),
      20_000,
      "recycle",
    );
    expect(stopped.reason).toMatch(/recycled after 1 sessions/);
  });

  it("replaces a harness whose health check hangs", async () => {
    // Strict enough to see a wedged server in seconds, not so strict that a busy machine's slow
    // answer to a fresh harness's first probes passes for one.
    t = await startTestServer({ scenario, pool: { tickMs: 300, healthFailures: 4, healthGraceMs: 5000 } });
    const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "hang on" });
    await collectUntil(t.client, s.id, (e) => e.type === "text.delta");
    const [h] = await harnessOf(t, s.shardId);
    // A stopped process accepts connections but never answers: a wedged server. The whole group: in
    // the sandbox the recorded pid is the harness's launcher, with the API bridge in its group.
    process.kill(-h!.pid!, "SIGSTOP");
    const events = await collectUntil(t.client, s.id, untilTurnFinished(1), { timeoutMs: 60_000 });
    const fin = events.find((e) => e.type === "turn.finished");
    expect(fin?.type === "turn.finished" && fin.data.outcome).toBe("interrupted");
    const lost = (await t.client.harnesses()).find((x) => x.id === h!.id)!;
    expect(lost.state).toBe("lost");
    expect(lost.reason).toMatch(/health check failed|stopped answering/);
  });

  it("GET /models answers with the last list a harness gave while that harness does not answer", async () => {
    // Health checks that never give up: the wedged harness stays the one GET /models would ask.
    t = await startTestServer({ scenario, pool: { tickMs: 300, healthFailures: 1_000_000 } });
    const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "say hi" });
    await collectUntil(t.client, s.id, untilTurnFinished(1));
    const fresh = await t.client.models();
    expect(fresh.models.map((m) => m.id)).toContain("scripted/scripted-1");
    const [h] = await harnessOf(t, s.shardId);
    process.kill(-h!.pid!, "SIGSTOP");
    try {
      // Unbounded, this request waited on the stopped server for as long as it stayed stopped.
      expect(await t.client.models()).toEqual(fresh);
    } finally {
      process.kill(-h!.pid!, "SIGCONT");
    }
  });
});
