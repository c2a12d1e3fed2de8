import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Session } from "@flotilla/contracts";
import { sign } from "@octokit/webhooks-methods";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeGitHub, forgeSettings } from "../../../test/github/fake-github.ts";
import {
  collectUntil,
  deadline,
  startTestServer,
  type TestServer,
  untilTurnFinished,
  waitFor,
} from "../../../test/support.ts";
import { scenario } from "./scenario.ts";

const TOKEN = `ghp_${"s3cr3t".repeat(6)}`;
let gh: FakeGitHub;
let t: TestServer;

beforeAll(async () => {
  gh = new FakeGitHub(TOKEN);
  await gh.start();
  gh.createRepo("acme", "widget");
  t = await startTestServer({
    scenario: {
      ...scenario,
      rules: [
        {
          match: "^dump the environment",
          steps: [
            {
              tool: "bash",
              args: {
                command: "env > env.txt; git config --list --show-origin > gitconfig.txt",
                description: "env",
              },
            },
            { text: "Written." },
          ],
        },
        ...scenario.rules,
      ],
    },
    config: {
      publicUrl: "http://flotilla.test:7700",
      forges: [forgeSettings(gh, "github")],
    },
  });
});
afterAll(async () => {
  await t?.close();
  await gh?.close();
});

async function sessionDone(repo: string, prompt: string): Promise<Session> {
  const s = await t.client.sessions.create({ repo, prompt });
  const events = await collectUntil(t.client, s.id, untilTurnFinished());
  expect(events.find((e) => e.type === "turn.finished")).toMatchObject({ data: { outcome: "success" } });
  return t.client.sessions.get(s.id);
}

/** Every file under dir whose content holds the needle. */
function filesHolding(dir: string, needle: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && statSync(p).size < 50_000_000 && readFileSync(p).includes(needle)) out.push(p);
    }
  };
  walk(dir);
  return out;
}

describe("push and pull requests", () => {
  let s: Session;

  it("pushes the session's branch through the credential helper; the token is nowhere else", async () => {
    s = await sessionDone(gh.cloneUrl("acme", "widget"), "write hello");
    const pushed = await t.client.sessions.push(s.id);
    expect(pushed).toMatchObject({
      remote: gh.cloneUrl("acme", "widget"),
      branch: `flotilla/${s.id}`,
      forge: "github",
      committed: { files: 1 },
    });
    expect(gh.ref("acme", "widget", `flotilla/${s.id}`)).toBe(pushed.commit);
    // git asked, was refused, and came back with the token the helper gave it.
    const basic = `Basic ${Buffer.from(`x-access-token:${TOKEN}`).toString("base64")}`;
    expect(gh.authorizations).toContain(basic);

    // The agent looks for it in its own environment and git config: a turn of its own in the sandbox.
    await t.client.sessions.send(s.id, { text: "dump the environment" });
    await collectUntil(t.client, s.id, untilTurnFinished(2));
    const env = readFileSync(join(s.workspacePath, "env.txt"), "utf8");
    expect(env).toContain("PATH=");
    expect(env).not.toContain(TOKEN);
    expect(readFileSync(join(s.workspacePath, "gitconfig.txt"), "utf8")).not.toContain(TOKEN);

    const needles = [TOKEN, Buffer.from(`x-access-token:${TOKEN}`).toString("base64")];
    for (const n of needles) {
      expect(filesHolding(join(s.workspacePath, ".."), n)).toEqual([]); // the workspace, .git included
      expect(filesHolding(join(t.home), n)).toEqual([]); // mirrors, shards, harness logs, the server log
    }
    const events = JSON.stringify((await t.client.sessions.events(s.id)).items);
    expect(events).not.toContain(TOKEN);
    expect(events).toContain(`pushed flotilla/${s.id}`);
    const remotes = execFileSync("git", ["-c", "safe.directory=*", "remote", "-v"], {
      cwd: s.workspacePath,
      encoding: "utf8",
    });
    expect(remotes).not.toContain("@");
  });

  it("opens a draft pull request written from the session, once, and follows its checks and state", async () => {
    const pr = await t.client.sessions.openPullRequest(s.id, { labels: ["agent"] });
    expect(pr).toMatchObject({
      forge: "github",
      repo: "acme/widget",
      number: 1,
      draft: true,
      state: "open",
      head: `flotilla/${s.id}`,
      base: "main",
      title: "write hello",
      checks: { state: "none", total: 0 },
    });
    expect(gh.pulls).toHaveLength(1);
    expect(gh.pulls[0]!.body).toContain(`](http://flotilla.test:7700/s/${s.id})`);
    expect(gh.pulls[0]!.body).toContain("hello.txt");
    expect(gh.pulls[0]!.labels).toEqual(["agent"]);
    const again = await t.client.sessions.openPullRequest(s.id);
    expect(again.number).toBe(1);
    expect(gh.pulls).toHaveLength(1);

    gh.statuses.set(pr.headSha, [{ state: "success", context: "ci/test" }]);
    const checked = await t.client.sessions.pullRequest(s.id);
    expect(checked.checks).toEqual({ state: "success", total: 1, passed: 1, failed: 0, pending: 0 });
    gh.pulls[0]!.merged = true;
    gh.pulls[0]!.state = "closed";
    expect((await t.client.sessions.pullRequest(s.id)).state).toBe("merged");
    const summaries = (await t.client.sessions.events(s.id)).items.flatMap((e) =>
      e.type === "git" && e.data.action === "pull_request" ? [e.data.summary] : [],
    );
    expect(await t.client.sessions.branch(s.id)).toMatchObject({
      local: false,
      target: null,
      remote: { url: gh.cloneUrl("acme", "widget"), forge: "github" },
      pushed: { to: gh.cloneUrl("acme", "widget"), commit: pr.headSha },
      pullRequest: { number: 1, state: "merged", checks: { state: "success" } },
    });
    expect(summaries).toEqual([
      expect.stringMatching(/^draft pull request #1 of flotilla\/ses_\w+ into main: http/),
      "pull request #1 is open; checks: success (1/1 passed)",
      "pull request #1 is merged; checks: success (1/1 passed)",
    ]);
    expect(gh.violations).toEqual([]);
  });

  it("starts a task from an issue comment, with the thread as context, and posts the result back", async () => {
    gh.issues.set("acme/widget#7", { title: "Greet people", body: "We need a hello file.", comments: [] });
    gh.comments.push({
      owner: "acme",
      repo: "widget",
      issue: 7,
      user: "octocat",
      body: "Agreed, plain text is fine.",
    });
    const event = (body: string, association = "OWNER") =>
      JSON.stringify({
        action: "created",
        comment: { id: 4242, body, author_association: association, user: { login: "octocat" } },
        issue: { number: 7, title: "Greet people" },
        repository: { full_name: "acme/widget", clone_url: gh.cloneUrl("acme", "widget") },
      });
    const deliver = async (payload: string, signature?: string) => {
      const res = await fetch(`${t.url}/forges/github/webhook`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-github-event": "issue_comment",
          "x-github-delivery": "delivery-1",
          ...(signature === undefined
            ? { "x-hub-signature-256": await sign("github-hook-secret", payload) }
            : { "x-hub-signature-256": signature }),
        },
        body: payload,
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const forged = await deliver(event("/flotilla write hello"), `sha256=${"0".repeat(64)}`);
    expect(forged.status).toBe(401);
    const outsider = await deliver(event("/flotilla write hello", "NONE"));
    expect(outsider).toEqual({ status: 200, body: { ignored: "octocat (NONE) may not start work" } });
    const chatter = await deliver(event("thanks!"));
    expect(chatter).toEqual({ status: 200, body: { ignored: "not a /flotilla command" } });
    expect((await t.client.tasks.list()).items).toEqual([]);

    const started = await deliver(event("/flotilla write hello"));
    expect(started.status).toBe(202);
    const again = await deliver(event("/flotilla write hello"));
    expect(again.body).toEqual({ taskId: started.body.taskId, created: false }); // a redelivery
    const id = String(started.body.taskId);
    const task = await waitFor(async () => {
      const x = await t.client.tasks.get(id);
      return ["succeeded", "failed", "dead", "cancelled", "timed_out"].includes(x.state) ? x : undefined;
    }, deadline(180_000));
    expect(task).toMatchObject({ state: "succeeded", pr: { draft: true }, labels: { "forge.issue": "7" } });
    expect(task.prompt).toContain("Greet people");
    expect(task.prompt).toContain("@octocat wrote:\nAgreed, plain text is fine.");
    const pr = gh.pulls.find((p) => p.number === task.result?.pullRequest?.number);
    expect(pr).toMatchObject({ head: `flotilla/${task.sessionId}`, base: "main", draft: true });
    expect(gh.ref("acme", "widget", pr!.head)).toBe(task.result?.commit);
    const reply = await waitFor(
      async () => gh.comments.find((c) => c.issue === 7 && c.user === "flotilla[bot]"),
      30_000,
    );
    expect(reply.body).toContain(`Done: ${task.result?.pullRequest?.url}`);
    expect(gh.violations).toEqual([]);
  });
});
