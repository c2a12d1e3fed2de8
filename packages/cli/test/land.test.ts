import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { BranchState, GcResult, Session } from "@flotilla/client";
import type { Scenario } from "@flotilla/scripted-model";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  collectUntil,
  deadline,
  makeRepo,
  startTestServer,
  type TestServer,
  untilTurnFinished,
} from "../../../test/support.ts";
import { scenario as base } from "../../server/test/scenario.ts";
import { cliEnv, killChildren, runCli } from "./cli.ts";

// Landing a session's work from the CLI: commit on its branch, look at the branch, merge it into
// the user's repository (and be refused on a conflict), and list the leftovers gc would remove.
// Two sessions on one repository, one turn each, run at the same time: A writes hello.txt, B writes
// a different hello.txt from the same base, so once A is merged, B conflicts with main.
const scenario: Scenario = {
  ...base,
  rules: [
    {
      match: "^write another hello",
      steps: [
        { tool: "write", args: { filePath: "hello.txt", content: "another hello\n" } },
        { text: "I wrote another hello.txt." },
      ],
    },
    ...base.rules,
  ],
};

let t: TestServer;
let conn: string[];
let repo: string;
let a: Session;
let b: Session;

beforeAll(async () => {
  t = await startTestServer({ scenario });
  conn = ["--server", t.url, "--token", t.token];
  repo = makeRepo();
  [a, b] = await Promise.all([
    t.client.sessions.create({ repo, prompt: "write hello" }),
    t.client.sessions.create({ repo, prompt: "write another hello" }),
  ]);
  await Promise.all(
    [a, b].map((s) => collectUntil(t.client, s.id, untilTurnFinished(1), { timeoutMs: 120_000 })),
  );
});
afterEach(() => killChildren());
afterAll(async () => {
  killChildren();
  await t?.close();
});

const cli = (args: string[], env?: Record<string, string>) =>
  runCli([...args, ...conn], { timeoutMs: deadline(60_000), env });
// The workspace belongs to the agent's user in the sandbox: git would call it dubious otherwise.
const git = (dir: string, ...args: string[]) =>
  execFileSync("git", ["-c", "safe.directory=*", "-C", dir, ...args], { encoding: "utf8" });

describe("flotilla commit, branch, merge, gc", () => {
  let commitSha: string;

  it("commit -m --author commits on the session's branch, crediting the agent; the log shows it", async () => {
    const r = await cli(["commit", a.id, "-m", "Add hello", "--author", "Ada Lovelace <ada@example.com>"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const m = /committed ([0-9a-f]{7}) on (\S+): Add hello \(1 file\)/.exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    expect(m![2]).toBe(a.branch);

    const log = git(a.workspacePath, "log", "-1", "--format=%H%n%an <%ae>%n%B");
    const [sha, author, ...body] = log.trim().split("\n");
    commitSha = sha!;
    expect(sha!.startsWith(m![1]!)).toBe(true);
    expect(author).toBe("Ada Lovelace <ada@example.com>");
    expect(body[0]).toBe("Add hello");
    expect(body.join("\n")).toMatch(/^Co-authored-by: [^<\n]+ <[^>\n]+>$/m);

    // Again: nothing left to commit; a clear refusal that points at merge.
    const again = await cli(["commit", a.id, "-m", "Again"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^error nothing_to_commit: /);
    expect(again.stderr).toContain(`flotilla merge ${a.id}`);

    // The session's log renders the git event.
    const logs = await cli(["logs", a.id]);
    expect(logs.stdout).toMatch(new RegExp(`● committed ${m![1]}.*Add hello`));
  });

  it("branch --json is the BranchState; branch prints it for people", async () => {
    const r = await cli(["branch", a.id, "--json"]);
    expect(r.code).toBe(0);
    const b0 = JSON.parse(r.stdout) as BranchState;
    expect(b0).toMatchObject({
      branch: a.branch,
      baseCommit: a.baseCommit,
      head: commitSha,
      uncommitted: 0,
      local: true,
      target: "main",
      merged: null,
    });
    expect(b0.commits.map((c) => [c.sha, c.subject, c.author.name])).toEqual([
      [commitSha, "Add hello", "Ada Lovelace"],
    ]);

    const text = await cli(["branch", a.id]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(a.branch!);
    expect(text.stdout).toMatch(/commits\s+1 since base/);
    expect(text.stdout).toContain(`${commitSha.slice(0, 7)} Add hello  Ada Lovelace`);
    expect(text.stdout).toMatch(/merge into\s+main/);
  });

  it("merge fast-forwards the repository's main and updates its clean working tree", async () => {
    const r = await cli(["merge", a.id]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`fast-forwarded main to ${commitSha.slice(0, 7)}`);
    // The user's working tree moved with it, and the output says so (once).
    expect(r.stdout.match(/working tree/g)).toHaveLength(1);
    expect(git(repo, "log", "main", "--format=%H %s")).toContain(`${commitSha} Add hello`);
    expect(readFileSync(join(repo, "hello.txt"), "utf8")).toBe("hello from the agent\n");
    const after = JSON.parse((await cli(["branch", a.id, "--json"])).stdout) as BranchState;
    expect(after.merged).toMatchObject({ into: "main", commit: commitSha });
    // Again: nothing new to land.
    const again = await cli(["merge", a.id]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`main already has every commit of ${a.branch}`);
  });

  it("a second session that wrote the same file: commit with the user's git identity, merge refused with the file", async () => {
    // No --author and no -m: the CLI sends the user's git identity, the server writes the message.
    const identity = cliEnv({
      GIT_CONFIG_COUNT: "2",
      GIT_CONFIG_KEY_0: "user.name",
      GIT_CONFIG_VALUE_0: "Grace Hopper",
      GIT_CONFIG_KEY_1: "user.email",
      GIT_CONFIG_VALUE_1: "grace@example.com",
    });
    const c = await cli(["commit", b.id], identity);
    expect(c.stderr).toBe("");
    expect(c.code).toBe(0);
    expect(c.stdout).toMatch(new RegExp(`committed [0-9a-f]{7} on ${b.branch}: .+ \\(1 file\\)`));
    expect(git(b.workspacePath, "log", "-1", "--format=%an <%ae>").trim()).toBe(
      "Grace Hopper <grace@example.com>",
    );

    const head = git(repo, "rev-parse", "main").trim();
    const r = await cli(["merge", b.id]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("conflicts with main in:");
    expect(r.stderr.split("\n")).toContain("  hello.txt");
    expect(r.stderr).toContain(`flotilla merge ${b.id} --patch`);
    // Refused: the user's repository is as it was.
    expect(git(repo, "rev-parse", "main").trim()).toBe(head);
    expect(readFileSync(join(repo, "hello.txt"), "utf8")).toBe("hello from the agent\n");
  });

  it("gc lists a deleted session's kept workspace and says how to remove it; --yes removes it", async () => {
    const rm = await cli(["rm", a.id]);
    expect(rm.code).toBe(0);
    const r = await cli(["gc"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^KIND\s+PATH \/ BRANCH\s+DETAIL/m);
    expect(r.stdout.split("\n")).toContainEqual(expect.stringMatching(/^workspace\s+/));
    expect(r.stdout).toContain(a.workspacePath);
    expect(r.stdout).toContain("run flotilla gc --yes to remove");
    const json = JSON.parse((await cli(["gc", "--json"])).stdout) as GcResult;
    expect(json.removed).toBe(0);
    expect(json.items).toContainEqual(expect.objectContaining({ kind: "workspace", path: a.workspacePath }));
    expect(existsSync(a.workspacePath)).toBe(true);

    const yes = await cli(["gc", "--yes"]);
    expect(yes.code, yes.stdout + yes.stderr).toBe(0);
    expect(yes.stdout).toMatch(/removed \d+ leftovers?/);
    expect(existsSync(a.workspacePath)).toBe(false);
  });
});
