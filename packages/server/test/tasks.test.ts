import { existsSync } from "node:fs";
import { join } from "node:path";
import { FlotillaError, type Task } from "@flotilla/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  collectUntil,
  deadline,
  makeRepo,
  startTestServer,
  type TestServer,
  waitFor,
} from "../../../test/support.ts";
import { scenario } from "./scenario.ts";

let t: TestServer;
/** One repository, so one project and one harness for every test that does not kill its harness:
 * the first test boots it and the rest find it warm (each test's own repository meant a harness
 * boot per test, three at once in the cancel test, which overran its deadlines on a loaded machine). */
let repo: string;
beforeAll(async () => {
  t = await startTestServer({ scenario, scheduler: { maxConcurrent: 2 } });
  repo = makeRepo();
});
afterAll(async () => {
  await t?.close();
});

const FINAL = ["succeeded", "failed", "cancelled", "timed_out", "dead"];
async function settled(id: string, timeoutMs = 90_000): Promise<Task> {
  return waitFor(
    async () => {
      const task = await t.client.tasks.get(id);
      return FINAL.includes(task.state) ? task : undefined;
    },
    timeoutMs,
    `task ${id} to finish`,
  );
}

describe("tasks", () => {
  it("runs a task as a session; its result holds the summary, diff stats, usage and the verify outcome", async () => {
    const { task, created } = await t.client.tasks.submit({
      repo,
      prompt: "write hello please",
      verify: "grep -q agent hello.txt",
      labels: { team: "core" },
    });
    expect(created).toBe(true);
    expect(task.state).toBe("queued");
    const done = await settled(task.id);
    expect(done.state).toBe("succeeded");
    expect(done.attempts).toBe(1);
    expect(done.result).toMatchObject({
      summary: "I wrote hello.txt for you.",
      files: 1,
      additions: 1,
      deletions: 0,
      verify: { exitCode: 0 },
    });
    expect(done.result!.tokens.input).toBeGreaterThan(0);
    expect(done.history!.map((h) => h.to)).toEqual(["queued", "running", "succeeded"]);
    expect(done.attemptList).toHaveLength(1);
    const session = await t.client.sessions.get(done.sessionId!);
    expect(existsSync(join(session.workspacePath, "hello.txt"))).toBe(true);
    // The workspace stays, and the attempt's session is idle on its (pooled) harness.
    expect(session.status).toBe("idle");
    const page = await t.client.tasks.list({ label: "team=core" });
    expect(page.items.map((x) => x.id)).toEqual([task.id]);
  });

  it("a failing verify command fails the task, without retrying", async () => {
    const { task } = await t.client.tasks.submit({
      repo,
      prompt: "say hi",
      verify: "echo checking; exit 3",
    });
    const done = await settled(task.id);
    expect(done.state).toBe("failed");
    expect(done.error).toMatchObject({ name: "VerifyFailed" });
    expect(done.result?.verify).toMatchObject({ exitCode: 3, output: "checking\n" });
    expect(done.attempts).toBe(1);
  });

  it("a provider auth error is not retried", async () => {
    const { task } = await t.client.tasks.submit({
      repo,
      prompt: "fail auth now",
      maxAttempts: 3,
    });
    const done = await settled(task.id);
    expect(done.state).toBe("failed");
    expect(done.attempts).toBe(1);
    expect(done.error?.message).toMatch(/invalid api key/);
  });

  it("times out: the session is aborted and the task is timed_out", async () => {
    const { task } = await t.client.tasks.submit({
      repo,
      prompt: "hang forever",
      timeoutMs: 10_000,
    });
    const done = await settled(task.id);
    expect(done.state).toBe("timed_out");
    expect(done.error?.name).toBe("Timeout");
    // Whether the deadline caught the turn running or (on a loaded machine) still provisioning,
    // the agent is stopped: the session ends idle, and a turn, if one started, was aborted.
    await waitFor(
      async () => (await t.client.sessions.get(done.sessionId!)).status === "idle",
      30_000,
      "session idle",
    );
    const events = (await t.client.sessions.events(done.sessionId!)).items;
    const fin = events.find((e) => e.type === "turn.finished");
    const started = events.some((e) => e.type === "turn.started");
    expect(started ? fin?.type === "turn.finished" && fin.data.outcome : "no turn").toBe(
      started ? "aborted" : "no turn",
    );
  });

  // Two harness boots (one per attempt), each allowed its 120 s ready timeout when loaded.
  it("a harness crash is retried with back-off; when attempts run out the task is dead", {
    timeout: deadline(480_000),
  }, async () => {
    // Its own repository, so its own harness: this test kills it.
    const { task } = await t.client.tasks.submit({ repo: makeRepo(), prompt: "slow please", maxAttempts: 2 });
    for (let attempt = 1; attempt <= 2; attempt++) {
      const running = await waitFor(
        async () => {
          const x = await t.client.tasks.get(task.id);
          return x.state === "running" &&
            x.attempts === attempt &&
            x.sessionId &&
            x.attemptList?.at(-1)?.sessionId === x.sessionId
            ? x
            : undefined;
        },
        60_000,
        `attempt ${attempt} running`,
      );
      const s = await t.client.sessions.get(running.sessionId!);
      // Each attempt boots a harness first, which may take up to its ready timeout (120 s) when loaded.
      await collectUntil(t.client, s.id, (e) => e.type === "text.delta", { timeoutMs: 180_000 });
      const h = (await t.client.harnesses()).find((x) => x.shardId === s.shardId && x.state === "ready")!;
      process.kill(-h.pid!, "SIGKILL");
    }
    const done = await settled(task.id);
    expect(done.state).toBe("dead");
    expect(done.attempts).toBe(2);
    expect(done.history!.map((h) => h.to)).toEqual(["queued", "running", "queued", "running", "dead"]);
    const retryAt = done.history![2]!;
    expect(retryAt.reason).toMatch(/retrying/);
    // Back-off: the second attempt did not start before the first one's failure plus the base delay's lower bound.
    const failedAt = Date.parse(done.history![2]!.at);
    const restartedAt = Date.parse(done.history![3]!.at);
    expect(restartedAt - failedAt).toBeGreaterThanOrEqual(100);

    const again = await t.client.tasks.retry(task.id);
    // Back in the queue (a scheduler poll may already have claimed it again).
    expect(["queued", "running"]).toContain(again.state);
    expect(again.maxAttempts).toBe(4);
    await t.client.tasks.cancel(task.id);
  });

  it("cancels a queued task at once and a running one by aborting its session", async () => {
    // Two hanging tasks fill both slots; the third waits in the queue.
    const a = (await t.client.tasks.submit({ repo, prompt: "hang a" })).task;
    const b = (await t.client.tasks.submit({ repo, prompt: "hang b" })).task;
    await waitFor(
      async () => (await t.client.tasks.list({ state: "running" })).items.length === 2,
      30_000,
      "two running",
    );
    const c = (await t.client.tasks.submit({ repo, prompt: "hang c" })).task;
    expect((await t.client.tasks.get(c.id)).state).toBe("queued");
    const cq = await t.client.tasks.cancel(c.id);
    expect(cq.state).toBe("cancelled");
    expect(cq.attempts).toBe(0);

    // Cancel a once its agent is mid-turn.
    const sessionA: string = await waitFor(
      async () => (await t.client.tasks.get(a.id)).sessionId ?? undefined,
      30_000,
      "a's session",
    );
    await collectUntil(t.client, sessionA, (e) => e.type === "text.delta");
    await t.client.tasks.cancel(a.id);
    const doneA = await settled(a.id);
    expect(doneA.state).toBe("cancelled");
    const fin = (await t.client.sessions.events(doneA.sessionId!)).items.find(
      (e) => e.type === "turn.finished",
    );
    expect(fin?.type === "turn.finished" && fin.data.outcome).toBe("aborted");
    // b is cancelled while still provisioning, perhaps: its prompt must then never run.
    await t.client.tasks.cancel(b.id);
    const doneB = await settled(b.id);
    expect(doneB.state).toBe("cancelled");
    const bEvents = (await t.client.sessions.events(doneB.sessionId!)).items;
    const bFin = bEvents.find((e) => e.type === "turn.finished");
    expect(bFin === undefined || (bFin.type === "turn.finished" && bFin.data.outcome === "aborted")).toBe(
      true,
    );
    await expect(t.client.tasks.retry(a.id).then((x) => t.client.tasks.cancel(x.id))).resolves.toBeTruthy();
  });

  it("an idempotency key deduplicates submits", async () => {
    const first = await t.client.tasks.submit({ repo, prompt: "say hi", idempotencyKey: "build-42" });
    const second = await t.client.tasks.submit({ repo, prompt: "say hi again", idempotencyKey: "build-42" });
    expect(first.created).toBe(true);
    expect(second.created).toBe(false);
    expect(second.task.id).toBe(first.task.id);
    await settled(first.task.id);
  });
});

describe("backpressure", () => {
  it("a full queue answers 429 with Retry-After and stores nothing", async () => {
    // An API-only replica (scheduler off) with room for two queued tasks.
    const api = await startTestServer({ scenario, scheduler: { enabled: false, maxQueued: 2 } });
    try {
      const repo = makeRepo();
      await api.client.tasks.submit({ repo, prompt: "one" });
      await api.client.tasks.submit({ repo, prompt: "two" });
      const res = await fetch(`${api.url}/tasks`, {
        method: "POST",
        headers: { authorization: `Bearer ${api.token}`, "content-type": "application/json" },
        body: JSON.stringify({ repo, prompt: "three" }),
      });
      expect(res.status).toBe(429);
      const retryAfter = Number(res.headers.get("retry-after"));
      expect(retryAfter).toBeGreaterThan(0);
      const body = (await res.json()) as { error: { code: string; retryAfterSeconds: number } };
      expect(body.error).toMatchObject({ code: "rate_limited", retryAfterSeconds: retryAfter });
      // The client hands both on as declared fields of its error.
      const refused = await api.client.tasks.submit({ repo, prompt: "four" }).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(FlotillaError);
      expect(refused).toMatchObject({ code: "rate_limited", retryAfterSeconds: retryAfter, retriable: true });
      expect((await api.client.tasks.list()).items).toHaveLength(2);
    } finally {
      await api.close();
    }
  });
});
