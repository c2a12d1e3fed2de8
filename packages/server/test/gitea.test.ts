import { createHmac } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeGitea } from "../../../test/github/fake-gitea.ts";
import { forgeSettings } from "../../../test/github/fake-github.ts";
import {
  collectUntil,
  startTestServer,
  type TestServer,
  untilTurnFinished,
  waitFor,
} from "../../../test/support.ts";
import { scenario } from "./scenario.ts";

// The same landing, on a second kind of forge behind the same interface: Gitea (and Forgejo).
const TOKEN = "gitea_token_0123456789abcdef";
let gt: FakeGitea;
let t: TestServer;

beforeAll(async () => {
  gt = new FakeGitea(TOKEN);
  await gt.start();
  gt.createRepo("team", "tool");
  t = await startTestServer({
    scenario,
    config: {
      forges: [forgeSettings(gt, "gitea", "gitea")],
    },
  });
});
afterAll(async () => {
  await t?.close();
  await gt?.close();
});

describe("a Gitea forge", () => {
  it("pushes, opens a draft pull request (WIP: title) with labels, and reads its checks", async () => {
    const s = await t.client.sessions.create({ repo: gt.cloneUrl("team", "tool"), prompt: "write hello" });
    await collectUntil(t.client, s.id, untilTurnFinished());
    const pr = await t.client.sessions.openPullRequest(s.id);
    expect(pr).toMatchObject({
      forge: "gitea",
      repo: "team/tool",
      number: 1,
      title: "write hello",
      draft: true,
      state: "open",
      head: `flotilla/${s.id}`,
      base: "main",
    });
    expect(gt.pulls[0]).toMatchObject({ title: "WIP: write hello", labels: ["flotilla"] });
    expect(gt.ref("team", "tool", `flotilla/${s.id}`)).toBe(pr.headSha);
    gt.statuses.set(pr.headSha, [
      { state: "success", context: "build" },
      { state: "failure", context: "lint" },
    ]);
    expect((await t.client.sessions.pullRequest(s.id)).checks).toEqual({
      state: "failure",
      total: 2,
      passed: 1,
      failed: 1,
      pending: 0,
    });
    expect(gt.violations).toEqual([]);
  });

  it("starts a task from a /flotilla comment by someone with write access, and answers on the issue", async () => {
    gt.issues.set("team/tool#9", { title: "Say hello", body: "A hello file, please.", comments: [] });
    const deliver = async (login: string) => {
      const payload = JSON.stringify({
        action: "created",
        comment: { id: 77, body: "/flotilla write hello", user: { login } },
        issue: { number: 9 },
        repository: { full_name: "team/tool", clone_url: gt.cloneUrl("team", "tool") },
      });
      const res = await fetch(`${t.url}/forges/gitea/webhook`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-gitea-event": "issue_comment",
          "x-gitea-delivery": `d-${login}`,
          "x-gitea-signature": createHmac("sha256", "gitea-hook-secret").update(payload).digest("hex"),
        },
        body: payload,
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    expect(await deliver("passerby")).toEqual({
      status: 200,
      body: { ignored: "passerby may not start work" },
    });
    const started = await deliver("maintainer");
    expect(started.status).toBe(202);
    const task = await waitFor(async () => {
      const x = await t.client.tasks.get(String(started.body.taskId));
      return ["succeeded", "failed", "dead", "cancelled", "timed_out"].includes(x.state) ? x : undefined;
    }, 180_000);
    expect(task).toMatchObject({ state: "succeeded", labels: { "forge.name": "gitea", "forge.issue": "9" } });
    const reply = await waitFor(
      async () => gt.comments.find((c) => c.issue === 9 && c.user === "flotilla-bot"),
      30_000,
    );
    expect(reply.body).toContain(`Done: ${task.result?.pullRequest?.url}`);
    expect(gt.violations).toEqual([]);
  });
});
