import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { makeRepo, startTestServer, type TestServer } from "../../../test/support.ts";
import { scenario } from "../../server/test/scenario.ts";
import { killChildren, runCli } from "./cli.ts";

// An API-only replica (its scheduler off, so nothing ever leaves the queue) with room for one task.
let t: TestServer;
let conn: string[];
beforeAll(async () => {
  t = await startTestServer({ scenario, scheduler: { enabled: false, maxQueued: 1 } });
  conn = ["--server", t.url, "--token", t.token];
});
afterEach(() => killChildren());
afterAll(async () => {
  killChildren();
  await t?.close();
});

describe("a full queue", () => {
  it("refuses the next submit: exit 1, the server's error and its Retry-After hint; nothing is stored", async () => {
    const repo = makeRepo();
    const first = await runCli(["task", "submit", "one", "--repo", repo, ...conn]);
    expect(first.code, first.stderr).toBe(0);
    const id = first.stdout.trim();

    const r = await runCli(["task", "submit", "two", "--repo", repo, ...conn]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/^error rate_limited: the queue is full .*try again later\n/);
    expect(r.stderr).toMatch(/the server asks to retry after 5 s/);

    // --wait and run --queue are refused the same way, before waiting for anything.
    const queued = await runCli(["run", "three", "--queue", "--repo", repo, ...conn]);
    expect(queued.code).toBe(1);
    expect(queued.stderr).toMatch(/retry after 5 s/);

    const page = JSON.parse((await runCli(["task", "ls", "--json", ...conn])).stdout);
    expect(page.items.map((x: { id: string }) => x.id)).toEqual([id]);
  });

  it("a task that has not finished cannot be retried: the server's conflict, exit 1", async () => {
    const { items } = await t.client.tasks.list();
    const r = await runCli(["task", "retry", items[0]!.id, ...conn]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^error conflict: task tsk_\w+ is queued; only a failed, cancelled, timed-out or dead task can be retried/,
    );
  });
});
