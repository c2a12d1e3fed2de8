import { copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Session } from "@flotilla/client";
import type { Scenario } from "@flotilla/scripted-model";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deadline, makeRepo, startTestServer, type TestServer, waitFor } from "../../../test/support.ts";

// 50 sessions created at once on the 2-core machine, with a budget of 3 harnesses: every session
// reaches a final state, none fails for capacity, and no more than 3 harnesses ever exist at once.
const scenario: Scenario = { rules: [], default: [{ text: "Hello from a crowded machine." }] };
const BUDGET = 3;

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({
    scenario,
    scheduler: { memoryBudgetMb: BUDGET * 700, harnessMemoryMb: 700 },
    // A lenient health check: four first prompts at once on a loaded 2-core machine can keep a harness
    // from answering a 2 s probe for a while; admission, not the health policy, is under test here.
    pool: { workspacesPerHarness: 4, healthFailures: 20 },
  });
});
afterAll(async () => {
  // The control plane's log outlives the run, for reading why a session failed.
  if (t) copyFileSync(t.logFile, join(tmpdir(), "flotilla-capacity-test.log"));
  await t?.close();
});

describe("admission", () => {
  it(
    "50 sessions at once: all finish, none fails for capacity, harnesses never exceed the budget",
    async () => {
      const repos = Array.from({ length: 5 }, () => makeRepo());
      const created = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          t.client.sessions.create({ repo: repos[i % 5]!, prompt: `hello number ${i}` }),
        ),
      );
      expect(created).toHaveLength(50);
      const final = await waitFor(
        async () => {
          const all = await Promise.all(created.map((s) => t.client.sessions.get(s.id)));
          return all.every((s) => ["idle", "failed", "interrupted"].includes(s.status)) ? all : undefined;
        },
        850_000,
        "every session final",
      );
      const notIdle = final.filter((s: Session) => s.status !== "idle");
      expect(notIdle.map((s) => `${s.id} ${s.status} ${s.error?.message}`)).toEqual([]);

      // Some waited in line, and were told their place.
      const queuedSeen = await Promise.all(
        created.map(async (s) =>
          (await t.client.sessions.events(s.id)).items.some(
            (e) =>
              e.type === "session.status" &&
              e.data.status === "queued" &&
              /in line|next/.test(e.data.reason ?? ""),
          ),
        ),
      );
      expect(queuedSeen.filter(Boolean).length).toBeGreaterThan(0);

      // The harnesses' own records: at no instant more than the budget alive.
      const c = new pg.Client({ connectionString: t.db });
      await c.connect();
      const { rows } = await c.query("select started_at, stopped_at from harnesses");
      await c.end();
      const edges = rows.flatMap((r) => [
        { at: r.started_at.getTime(), d: 1 },
        { at: (r.stopped_at ?? new Date(8.64e15)).getTime(), d: -1 },
      ]);
      // Ends before starts at the same instant: a slot is handed on only after its harness stopped.
      edges.sort((a, b) => a.at - b.at || a.d - b.d);
      let live = 0;
      let peak = 0;
      for (const e of edges) {
        live += e.d;
        peak = Math.max(peak, live);
      }
      expect(rows.length).toBeGreaterThan(BUDGET);
      expect(peak).toBeLessThanOrEqual(BUDGET);
    },
    deadline(900_000),
  );
});
