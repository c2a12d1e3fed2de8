import type { ActivityNotice } from "@flotilla/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  collectUntil,
  makeRepo,
  startTestServer,
  type TestServer,
  untilTurnFinished,
} from "../../../test/support.ts";
import { scenario } from "./scenario.ts";

/** Reads the activity feed in the background, keeping every notice. */
function watch(t: TestServer) {
  const ac = new AbortController();
  const seen: ActivityNotice[] = [];
  const done = (async () => {
    for await (const n of t.client.activity({ signal: ac.signal })) seen.push(n);
  })();
  return { seen, stop: () => (ac.abort(), done) };
}

describe("activity feed", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ scenario });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("tells of each session status change and each task transition, and nothing of their content", async () => {
    const feed = watch(t);
    // The feed is open once the server has it subscribed; the first notice proves it either way.
    const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "write hello please" });
    await collectUntil(t.client, s.id, untilTurnFinished(1));
    await expect
      .poll(() =>
        feed.seen
          .filter((n) => n.kind === "session" && n.id === s.id)
          .map((n) => n.kind === "session" && n.status)
          .filter(Boolean),
      )
      .toEqual(expect.arrayContaining(["running", "idle"]));

    const { task } = await t.client.tasks.submit({ repo: makeRepo(), prompt: "hang on" });
    await expect
      .poll(() => feed.seen.some((n) => n.kind === "task" && n.id === task.id && n.state === "running"), {
        timeout: 60_000,
      })
      .toBe(true);
    await t.client.tasks.cancel(task.id);
    await expect
      .poll(() => feed.seen.some((n) => n.kind === "task" && n.id === task.id && n.state === "cancelled"))
      .toBe(true);
    // Notices name what changed; the content (prompts, text) stays behind the per-resource reads.
    expect(JSON.stringify(feed.seen)).not.toContain("hello");
    expect(
      feed.seen.every((n) => Object.keys(n).every((k) => ["kind", "id", "status", "state"].includes(k))),
    ).toBe(true);
    await feed.stop();
  });

  it("refuses a caller without a credential", async () => {
    const res = await fetch(`${t.url}/activity`, { headers: { accept: "text/event-stream" } });
    expect(res.status).toBe(401);
  });
});
