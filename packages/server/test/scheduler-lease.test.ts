import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collectUntil, makeRepo, startTestServer, type TestServer, waitFor } from "../../../test/support.ts";
import { scenario } from "./scenario.ts";

// The lease renewal (the scheduler's heartbeat) and the claim run independently. A task claimed
// while a renewal is in flight is not in that renewal's list; it must not be taken for lost.
// The renewal's query is held here until the claim has happened, which makes the race certain
// rather than rare (it was: a fresh attempt aborted before its prompt ran, its session idle with
// no turn, its lease lapsing into a LeaseExpired retry; 2 of 100 tasks of the scale test).

let t: TestServer;
beforeAll(async () => {
  // Renewals every 2 s (leaseMs / 3).
  t = await startTestServer({ scenario, scheduler: { maxConcurrent: 4, leaseMs: 6000 } });
});
afterAll(async () => {
  await t?.close();
});

const RENEWAL = "update task_attempts set lease_expires_at = now() + make_interval";

describe("scheduler leases", () => {
  it("a task claimed while a lease renewal is in flight runs, and is not taken for lost", async () => {
    const repo = makeRepo();
    // A renewal only runs while something is running.
    const first = (await t.client.tasks.submit({ repo, prompt: "hang first" })).task;
    await waitFor(
      async () => (await t.client.tasks.get(first.id)).state === "running",
      60_000,
      "first running",
    );

    // Hold the next renewal's query until the second task has been claimed.
    const db = t.server.services.db;
    const query = db.query.bind(db) as (...args: unknown[]) => Promise<unknown>;
    let held: (() => void) | undefined;
    let holding!: () => void;
    const renewalHeld = new Promise<void>((r) => (holding = r));
    (db as unknown as { query: (...args: unknown[]) => Promise<unknown> }).query = async (...args) => {
      if (typeof args[0] === "string" && args[0].startsWith(RENEWAL) && !held) {
        const gate = new Promise<void>((r) => (held = r));
        holding();
        await gate;
      }
      return query(...args);
    };
    // Whatever the scheduler aborts, it aborts through the session.
    const sessions = t.server.services.sessions;
    const abort = sessions.abort.bind(sessions);
    const aborted: string[] = [];
    sessions.abort = (id, p) => {
      aborted.push(id);
      return abort(id, p);
    };
    try {
      await renewalHeld;
      const second = (await t.client.tasks.submit({ repo, prompt: "hang second" })).task;
      await waitFor(
        async () => (await t.client.tasks.get(second.id)).state === "running",
        60_000,
        "second claimed",
      );
      held!();
      const sessionId = await waitFor(
        async () => (await t.client.tasks.get(second.id)).sessionId ?? undefined,
        60_000,
        "second's session",
      );
      // Its prompt runs: the agent answers (the old renewal aborted it, and the session went idle).
      const events = await collectUntil(t.client, sessionId, (e) => e.type === "text.delta");
      expect(events.some((e) => e.type === "turn.started")).toBe(true);
      // Two renewals later it is still its first attempt, running, never aborted, with no failure.
      await t.server.services.scheduler.renewLeases();
      await t.server.services.scheduler.renewLeases();
      expect(aborted).not.toContain(sessionId);
      const got = await t.client.tasks.get(second.id);
      expect(got.state).toBe("running");
      expect(got.attempts).toBe(1);
      expect(got.error).toBeFalsy();
      expect((await t.client.sessions.get(sessionId)).status).toBe("running");
    } finally {
      sessions.abort = abort;
      (db as unknown as { query: unknown }).query = query;
      held?.();
      for (const s of await t.client.tasks.list({ state: "running" }).then((r) => r.items))
        await t.client.tasks.cancel(s.id).catch(() => {});
    }
  });
});
