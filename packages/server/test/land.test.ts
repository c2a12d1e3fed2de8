import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FlotillaError, type Session } from "@flotilla/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  collectUntil,
  deadline,
  makeRepo,
  startTestServer,
  type TestServer,
  untilTurnFinished,
  waitFor,
} from "../../../test/support.ts";
import { scenario } from "./scenario.ts";

// The one repository set to commit by itself at the end of every successful turn.
const autoRepo = makeRepo();
let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({
    scenario: {
      ...scenario,
      rules: [
        {
          // The agent handed a conflict: merges the user's branch, keeping its own side of each conflict.
          match: "^Merge `target/main` into your branch",
          steps: [
            {
              tool: "bash",
              args: {
                command: "git merge --no-edit -X ours target/main",
                description: "merge the user's main",
              },
            },
            { text: "Merged target/main, keeping my README heading." },
          ],
        },
        ...scenario.rules,
      ],
    },
    config: { git: { autoCommit: "off", projects: { [autoRepo]: { autoCommit: "turn" } } } },
  });
});
afterAll(async () => {
  await t?.close();
});

const git = (cwd: string, ...args: string[]) =>
  // The workspace belongs to the agent's user: reading it as ours needs git's ownership check off.
  execFileSync("git", ["-c", "safe.directory=*", ...args], {
    cwd,
    encoding: "utf8",
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: "User",
      GIT_AUTHOR_EMAIL: "user@example.invalid",
      GIT_COMMITTER_NAME: "User",
      GIT_COMMITTER_EMAIL: "user@example.invalid",
    },
  }).trim();

/**
 * The user's repository the landing tests merge into; the gc and task tests work in it too: one
 * project, so one harness for the whole file but autoRepo (a repository apiece booted a harness
 * apiece). None of them kills its harness; the gc test reads only refs it makes itself, and the task
 * starts from the repository's first commit, not from what the landing tests merged into main.
 */
const repo = makeRepo({ "README.md": "# scratch\n", "app.txt": "one\n" });
const base = git(repo, "rev-parse", "HEAD");

/** A new session whose first turn has ended. */
async function sessionDone(repo: string, prompt: string): Promise<Session> {
  const s = await t.client.sessions.create({ repo, prompt });
  // A repository's first session boots its harness first: up to its ready timeout (120 s) when loaded.
  const events = await collectUntil(t.client, s.id, untilTurnFinished(), { timeoutMs: 180_000 });
  expect(events.find((e) => e.type === "turn.finished")).toMatchObject({ data: { outcome: "success" } });
  return t.client.sessions.get(s.id);
}

/** The error a call is refused with. */
async function refusal(p: Promise<unknown>): Promise<FlotillaError> {
  const e = await p.then(
    () => undefined,
    (err) => err,
  );
  expect(e).toBeInstanceOf(FlotillaError);
  return e as FlotillaError;
}

/** Every ref Flotilla could have left in the user's repository. */
const ourRefs = (repo: string) =>
  git(repo, "for-each-ref", "--format=%(refname)", "refs/heads/flotilla/", "refs/flotilla/");

describe("landing a session's work", () => {
  let a: Session;
  let b: Session;

  // Boots the file's first harness (its ready timeout alone is 120 s on a loaded machine).
  beforeAll(async () => {
    [a, b] = await Promise.all([sessionDone(repo, "write hello"), sessionDone(repo, "edit readme")]);
  }, deadline(240_000));

  it("commits the workspace on the session's branch, by the person, with the agent as co-author", async () => {
    const state = await t.client.sessions.branch(a.id);
    expect(state).toMatchObject({
      branch: `flotilla/${a.id}`,
      baseCommit: base,
      head: base,
      commits: [],
      uncommitted: 1,
      coAuthor: { name: "Flotilla agent", email: "agent@flotilla.invalid" },
      local: true,
      target: "main",
      merged: null,
    });
    expect(state.draftMessage).toMatch(/^write hello\n\n[\s\S]*hello\.txt[\s\S]*Flotilla session: ses_/);

    const c = await t.client.sessions.commit(a.id, {
      author: { name: "Ada Lovelace", email: "ada@example.com" },
    });
    expect(c).toMatchObject({ branch: `flotilla/${a.id}`, files: 1, commit: { subject: "write hello" } });
    const ws = a.workspacePath;
    expect(git(ws, "log", "-1", "--format=%an <%ae>|%cn <%ce>", c.commit.sha)).toBe(
      "Ada Lovelace <ada@example.com>|Ada Lovelace <ada@example.com>",
    );
    expect(git(ws, "log", "-1", "--format=%(trailers:key=Co-authored-by,valueonly)", c.commit.sha)).toBe(
      "Flotilla agent <agent@flotilla.invalid>",
    );
    expect(git(ws, "rev-parse", `flotilla/${a.id}`)).toBe(c.commit.sha);
    expect(git(ws, "status", "--porcelain")).toBe("");

    const again = await refusal(t.client.sessions.commit(a.id));
    expect(again.code).toBe("nothing_to_commit");
    const after = await t.client.sessions.branch(a.id);
    expect(after).toMatchObject({ head: c.commit.sha, uncommitted: 0, commits: [{ sha: c.commit.sha }] });
    const events = await t.client.sessions.events(a.id);
    expect(events.items.filter((e) => e.type === "git").map((e) => e.data)).toEqual([
      expect.objectContaining({ action: "commit", commit: c.commit.sha }),
    ]);
  });

  it("merges it fast-forward into the user's checked-out main, updating its clean working tree", async () => {
    const head = (await t.client.sessions.branch(a.id)).head;
    const m = await t.client.sessions.merge(a.id);
    expect(m).toMatchObject({
      result: "fast-forward",
      into: "main",
      commit: head,
      committed: null,
      worktree: "updated",
      files: ["hello.txt"],
    });
    expect(git(repo, "rev-parse", "main")).toBe(head);
    expect(readFileSync(join(repo, "hello.txt"), "utf8")).toBe("hello from the agent\n");
    expect(git(repo, "status", "--porcelain")).toBe("");
    expect(ourRefs(repo)).toBe("");
    expect((await t.client.sessions.branch(a.id)).merged).toMatchObject({ into: "main", commit: head });
    const again = await t.client.sessions.merge(a.id);
    expect(again.result).toBe("up-to-date");
  });

  it("refuses to touch a dirty checked-out target, and applies the work there as a patch instead", async () => {
    writeFileSync(join(repo, "app.txt"), "one\nmine, not committed\n");
    const dirty = await refusal(t.client.sessions.merge(b.id));
    expect(dirty.code).toBe("worktree_dirty");
    expect(dirty.details).toMatchObject({ files: ["app.txt"] });
    // Refused whole: nothing was committed in the workspace, and main did not move.
    expect((await t.client.sessions.branch(b.id)).commits).toEqual([]);
    expect(git(repo, "rev-parse", "main")).toBe(git(repo, "rev-parse", "HEAD"));

    const p = await t.client.sessions.merge(b.id, { patch: true });
    expect(p).toMatchObject({ result: "patched", commit: null, worktree: "patched", files: ["README.md"] });
    expect(readFileSync(join(repo, "README.md"), "utf8")).toBe("# scratch, edited by the agent\n");
    expect(readFileSync(join(repo, "app.txt"), "utf8")).toBe("one\nmine, not committed\n");
    git(repo, "checkout", "--", "README.md", "app.txt");
  });

  it("refuses a merge that conflicts, naming the files, and changes nothing", async () => {
    writeFileSync(join(repo, "README.md"), "# scratch, edited by the user\n");
    git(repo, "commit", "-qam", "the user's own edit");
    const main = git(repo, "rev-parse", "main");
    const e = await refusal(t.client.sessions.merge(b.id, { message: "the agent's readme" }));
    expect(e.code).toBe("merge_conflict");
    expect(e.details).toEqual({ into: "main", files: ["README.md"] });
    expect(e.message).toContain("README.md");
    expect(git(repo, "rev-parse", "main")).toBe(main);
    expect(git(repo, "status", "--porcelain")).toBe("");
    expect(ourRefs(repo)).toBe("");
    // The uncommitted work was committed on the session's branch before the merge was tried.
    expect((await t.client.sessions.branch(b.id)).commits.map((c) => c.subject)).toEqual([
      "the agent's readme",
    ]);
  });

  it("hands a conflict to the agent, whose merge then lands as a fast-forward", async () => {
    const handed = await t.client.sessions.merge(b.id, { resolve: true });
    expect(handed).toMatchObject({ result: "resolving", into: "main", commit: null, files: ["README.md"] });
    const events = await collectUntil(t.client, b.id, untilTurnFinished(2));
    const prompt = events.filter((e) => e.type === "turn.started").at(-1);
    expect(prompt).toMatchObject({ data: { prompt: expect.stringContaining("`README.md`") } });
    expect(events.find((e) => e.type === "tool.updated" && e.data.status === "completed")).toBeDefined();
    const landed = await t.client.sessions.merge(b.id);
    expect(landed).toMatchObject({ result: "fast-forward", worktree: "updated" });
    expect(readFileSync(join(repo, "README.md"), "utf8")).toBe("# scratch, edited by the agent\n");
    expect(git(repo, "log", "--format=%s", "-3", "main").split("\n")).toContain("the user's own edit");
    expect(ourRefs(repo)).toBe("");
  });

  it("merges into a branch that is not checked out without touching any working tree, or squashes", async () => {
    git(repo, "branch", "release", base);
    const ff = await t.client.sessions.merge(b.id, { into: "release" });
    expect(ff).toMatchObject({ result: "fast-forward", into: "release", worktree: "untouched" });
    expect(git(repo, "rev-parse", "release")).toBe((await t.client.sessions.branch(b.id)).head);
    expect(git(repo, "symbolic-ref", "--short", "HEAD")).toBe("main");

    // A clean three-way merge, computed without a working tree: main has hello.txt from a, b edits README.
    git(repo, "branch", "topic", (await t.client.sessions.branch(a.id)).head);
    const sq = await t.client.sessions.merge(b.id, { into: "topic", squash: true });
    expect(sq).toMatchObject({ result: "squashed", worktree: "untouched", files: ["README.md"] });
    expect(git(repo, "rev-list", "--parents", "-n1", "topic").split(" ")).toHaveLength(2);
    expect(git(repo, "show", "topic:README.md")).toBe("# scratch, edited by the agent");
    expect(git(repo, "show", "topic:hello.txt")).toBe("hello from the agent");
    expect(git(repo, "log", "-1", "--format=%B", "topic")).toContain("Co-authored-by: Flotilla agent");
    expect(ourRefs(repo)).toBe("");
  });

  it("refuses bad input with the field named", async () => {
    const r = await t.client
      .request("POST", `/sessions/${a.id}/merge`, { into: "no-such-branch" })
      .catch((e) => e);
    expect(r).toMatchObject({ code: "invalid_request", field: "into" });
    const bad = await t.client
      .request("POST", `/sessions/${a.id}/commit`, { author: { name: "x", email: "nope" } })
      .catch((e) => e);
    expect(bad).toMatchObject({ code: "invalid_request", field: "author.email" });
  });

  it(
    "leaves no Flotilla branch in the user's repository after 20 sessions' workspaces are deleted",
    async () => {
      // Three at a time: eighteen first turns at once (each a new directory for OpenCode, seconds of
      // CPU apiece) beside another test file on two cores starve one another past any deadline. Three
      // lanes, each starting its next session when its last one is done (in batches of three, every
      // batch waited for its slowest).
      const more: Session[] = [];
      let started = 0;
      const lane = async () => {
        while (started < 18) {
          started++;
          more.push(await sessionDone(repo, "say hello"));
        }
      };
      await Promise.all([lane(), lane(), lane()]);
      for (const s of more.slice(0, 3)) await t.client.sessions.commit(s.id, {}).catch(() => undefined);
      const all = [a, b, ...more];
      expect(all).toHaveLength(20);
      for (const s of all) await t.client.sessions.delete(s.id, { workspace: true });
      for (const s of all) expect(existsSync(s.workspacePath)).toBe(false);
      expect(ourRefs(repo)).toBe("");
      expect(git(repo, "branch", "--list", "flotilla/*")).toBe("");
      expect(git(repo, "worktree", "list").split("\n")).toHaveLength(1);
      expect((await t.client.gc()).items).toEqual([]);
    },
    deadline(480_000),
  );
});

describe("gc", () => {
  it("lists what no live session owns, counts it on the overview, and removes it", async () => {
    const s = await sessionDone(repo, "write hello");
    await t.client.sessions.delete(s.id); // keeps its workspace
    // Left by versions that made worktrees, and by a merge cut short.
    git(repo, "branch", "flotilla/ses_0legacy");
    git(repo, "update-ref", "refs/flotilla/land/ses_0cut", "HEAD");
    git(repo, "branch", "flotilla-is-mine"); // the user's own: never ours
    const stray = join(t.home, "workspaces", "wsp_0stray");
    mkdirSync(join(stray, "tree"), { recursive: true });
    const old = new Date(Date.now() - 3_600_000);
    utimesSync(stray, old, old);

    const listed = await t.client.gc();
    expect(listed.removed).toBe(0);
    expect(listed.items.map((l) => [l.kind, l.kind === "branch" ? l.path : l.id]).sort()).toEqual(
      [
        ["branch", "refs/flotilla/land/ses_0cut"],
        ["branch", "refs/heads/flotilla/ses_0legacy"],
        ["directory", stray],
        ["workspace", s.workspaceId],
      ].sort(),
    );
    expect((await t.client.overview()).leftovers).toBe(4);

    const done = await t.client.gc({ remove: true });
    expect(done.removed).toBe(4);
    expect(existsSync(s.workspacePath)).toBe(false);
    expect(existsSync(stray)).toBe(false);
    expect(ourRefs(repo)).toBe("");
    expect(git(repo, "branch", "--list", "flotilla-is-mine")).toContain("flotilla-is-mine");
    expect((await t.client.gc()).items).toEqual([]);
    expect((await t.client.overview()).leftovers).toBe(0);
  });
});

describe("landing by itself", () => {
  it("commits at the end of every successful turn where the repository is set to", {
    timeout: deadline(240_000),
  }, async () => {
    const s = await t.client.sessions.create({ repo: autoRepo, prompt: "write hello" });
    // Its own project, so its own harness to boot first: up to its ready timeout (120 s) when loaded.
    const events = await collectUntil(t.client, s.id, (e) => e.type === "git", { timeoutMs: 180_000 });
    expect(events.at(-1)).toMatchObject({ type: "git", data: { action: "commit" } });
    const state = await t.client.sessions.branch(s.id);
    expect(state).toMatchObject({ uncommitted: 0, commits: [{ subject: "write hello" }] });
    expect(git(s.workspacePath, "log", "-1", "--format=%(trailers:key=Co-authored-by,valueonly)")).toBe(
      "Flotilla agent <agent@flotilla.invalid>",
    );
  });

  it("a task with commit: true commits its work on success", { timeout: deadline(240_000) }, async () => {
    // In the landing tests' repository, whose harness is up; from its first commit, as main has the
    // agent's hello.txt by now (merged there above), and writing it again would change nothing.
    const { task } = await t.client.tasks.submit({
      repo,
      baseRef: base,
      prompt: "write hello",
      commit: true,
    });
    const done = await waitFor(async () => {
      const x = await t.client.tasks.get(task.id);
      return ["succeeded", "failed", "dead", "cancelled", "timed_out"].includes(x.state) ? x : undefined;
    }, 180_000);
    expect(done).toMatchObject({ state: "succeeded", commit: true, result: { files: 1 } });
    const state = await t.client.sessions.branch(done.sessionId!);
    expect(done.result?.commit).toBe(state.head);
    expect(state.commits.map((c) => c.subject)).toEqual(["write hello"]);
  });
});
