import type { PullRequestInfo, PushResult, Session } from "@flotilla/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeGitHub, forgeSettings } from "../../../test/github/fake-github.ts";
import {
  collectUntil,
  deadline,
  startTestServer,
  type TestServer,
  untilTurnFinished,
} from "../../../test/support.ts";
import { scenario } from "../../server/test/scenario.ts";
import { type CliResult, killChildren, runCli } from "./cli.ts";

// Pushing a session's branch and its pull request from the CLI, against GitHub on loopback: push,
// `pr` before there is one, `pr --create`, `pr` with the forge's checks, `branch` with all of it,
// and a task submitted with --pr that ends with its pull request's url. Two turns in all, run at
// the same time: the session's, and the task's (its `task submit --wait` runs from the start).
const TOKEN = `ghp_${"t0k3n".repeat(7)}`;
let gh: FakeGitHub;
let t: TestServer;
let conn: string[];
let url: string;
let s: Session;
let task: Promise<CliResult>;

beforeAll(async () => {
  gh = new FakeGitHub(TOKEN);
  await gh.start();
  gh.createRepo("acme", "widget");
  url = gh.cloneUrl("acme", "widget");
  t = await startTestServer({
    scenario,
    config: {
      forges: [forgeSettings(gh, "github")],
    },
  });
  conn = ["--server", t.url, "--token", t.token];
  // The task runs alongside the session; its test only collects what it printed.
  task = cli(
    ["task", "submit", "write hello, queued", "--repo", url, "--pr-base", "main", "--ready", "--wait"],
    240_000,
  );
  task.catch(() => {}); // awaited (and so reported) by its test
  s = await t.client.sessions.create({ repo: url, prompt: "write hello" });
  await collectUntil(t.client, s.id, untilTurnFinished(1), { timeoutMs: 120_000 });
});
afterAll(async () => {
  killChildren();
  await t?.close();
  await gh?.close();
});

function cli(args: string[], ms = 60_000): Promise<CliResult> {
  return runCli([...args, ...conn], { timeoutMs: deadline(ms) });
}

describe("flotilla push, pr, and task submit --pr", () => {
  let pr: PullRequestInfo;

  it("push commits what is uncommitted, then pushes the branch to the repository's forge", async () => {
    const r = await cli(["push", s.id]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const head = gh.ref("acme", "widget", `flotilla/${s.id}`);
    expect(head).toMatch(/^[0-9a-f]{40}$/);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toMatch(
      new RegExp(`^✓ committed ${head!.slice(0, 7)} on flotilla/${s.id}: .+ \\(1 file\\)$`),
    );
    expect(lines[1]).toBe(`✓ pushed flotilla/${s.id} (${head!.slice(0, 7)}) to ${url}`);
    expect(lines[2]).toBe(`  open a pull request: flotilla pr ${s.id} --create`);

    // Again, as JSON: nothing left to commit, the same head.
    const again = await cli(["push", s.id, "--json"]);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout) as PushResult).toMatchObject({
      remote: url,
      branch: `flotilla/${s.id}`,
      commit: head,
      committed: null,
      forge: "github",
    });
  });

  it("pr without one says so and how to open it; --create opens a draft and prints its url", async () => {
    const none = await cli(["pr", s.id]);
    expect(none.code).toBe(1);
    expect(none.stdout).toBe("");
    expect(none.stderr).toBe(
      `error not_found: ${s.id} has no pull request\nopen one: flotilla pr ${s.id} --create\n`,
    );
    const misuse = await cli(["pr", s.id, "--ready"]);
    expect(misuse.code).toBe(1);
    expect(misuse.stderr).toContain("--ready only applies with --create");

    const r = await cli(["pr", s.id, "--create", "--label", "agent", "--label", "hello"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const made = gh.pulls.find((p) => p.head === `flotilla/${s.id}`);
    expect(made).toMatchObject({
      base: "main",
      draft: true,
      title: "write hello",
      labels: ["agent", "hello"],
    });
    const [line, link] = r.stdout.trim().split("\n");
    expect(line).toBe(`✓ opened draft pull request #${made!.number} of flotilla/${s.id} into main`);
    expect(link).toMatch(new RegExp(`^http\\S+/acme/widget/pull/${made!.number}$`));

    // Again: the open one, as it is.
    const again = await cli(["pr", s.id, "--create", "--ready"]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(
      `pull request #${made!.number} of flotilla/${s.id} into main was open already`,
    );
    expect(again.stdout).toContain("do not change an open pull request");
    expect(again.stdout.trim().split("\n").at(-1)).toBe(link);
    expect(gh.pulls.filter((p) => p.head === `flotilla/${s.id}`)).toHaveLength(1);
    pr = JSON.parse((await cli(["pr", s.id, "--json"])).stdout) as PullRequestInfo;
    expect(pr).toMatchObject({ number: made!.number, url: link, draft: true, state: "open" });
  });

  it("pr shows the pull request with its checks as the forge has them now; branch shows the push and it", async () => {
    gh.statuses.set(pr.headSha, [{ state: "success", context: "ci" }]);
    const r = await cli(["pr", s.id]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toBe(`#${pr.number} write hello  acme/widget on github`);
    expect(lines).toContain(`  url:    ${pr.url}`);
    expect(lines).toContain("  state:  open, draft");
    expect(lines).toContain(`  branch: flotilla/${s.id} → main at ${pr.headSha.slice(0, 7)}`);
    expect(lines).toContain("  checks: success 1/1");

    gh.statuses.set(pr.headSha, [
      { state: "success", context: "ci" },
      { state: "failure", context: "lint" },
      { state: "success", context: "docs" },
    ]);
    expect((await cli(["pr", s.id])).stdout).toContain("  checks: failure 1 of 3 failed");

    const b = await cli(["branch", s.id]);
    expect(b.code).toBe(0);
    expect(b.stdout).toMatch(new RegExp(`push to\\s+${url} \\(github\\)`));
    expect(b.stdout).toMatch(new RegExp(`last push\\s+${pr.headSha.slice(0, 7)} to ${url}`));
    expect(b.stdout).toMatch(
      new RegExp(`pull request\\s+#${pr.number} open, draft · checks failure 1 of 3 failed · ${pr.url}`),
    );
    // Pushed, and its pull request open: nothing left to suggest.
    expect(b.stdout).not.toContain("next:");
  });

  it("task submit --pr --ready --wait ends with the commit and the pull request's url; task show has them", async () => {
    const r = await task;
    expect(r.stderr).toBe("");
    expect(r.code, r.stdout).toBe(0);
    const id = /\btsk_[0-9a-z]+/.exec(r.stdout)![0];
    const done = await t.client.tasks.get(id);
    expect(done).toMatchObject({ state: "succeeded", commit: true, pr: { draft: false, base: "main" } });
    const made = gh.pulls.find((p) => p.head === `flotilla/${done.sessionId}`);
    expect(made).toMatchObject({ base: "main", draft: false, title: "write hello, queued" });
    expect(done.result).toMatchObject({ commit: made!.headSha, pullRequest: { number: made!.number } });
    const { url: prUrl } = done.result!.pullRequest!;
    expect(r.stdout).toMatch(/✓ succeeded · 1 attempt of 3/);
    expect(r.stdout).toContain(`  committed ${made!.headSha.slice(0, 7)}\n`);
    expect(r.stdout).toContain(`  pull request #${made!.number} ${prUrl}\n`);

    const show = await cli(["task", "show", id]);
    expect(show.code).toBe(0);
    expect(show.stdout).toMatch(/lands\s+pull request into main\n/);
    expect(show.stdout).toContain(`pull request #${made!.number} ${prUrl}`);
    expect(gh.violations).toEqual([]);
  });
});
