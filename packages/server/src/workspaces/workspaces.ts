import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { type Diff, FlotillaError } from "@flotilla/contracts";
import { checkRequestUrl, type EgressPolicy, gitEgressArgs } from "../platform/http/egress.ts";
import { workspacesDir } from "../runtime/shard-layout.ts";
import { type GitResult, git, gitErrorText } from "./git.ts";

export interface WorkspacePlan {
  id: string;
  kind: "worktree" | "clone";
  repo: string;
  path: string;
  baseRef: string;
  baseCommit: string;
  branch: string;
}

const URL_LIKE = /^(https?|git|ssh|file):\/\/|^[\w.-]+@[\w.-]+:/;

export const isGitUrl = (repo: string) => URL_LIKE.test(repo);

/**
 * Normalises and checks a repo reference; throws a 4xx naming the field, touching nothing. A URL's
 * host must pass the egress policy (no loopback, private or metadata addresses unless allowed).
 */
export async function resolveRepo(
  repo: string,
  egress: EgressPolicy,
): Promise<{ repo: string; kind: "worktree" | "clone" }> {
  if (isGitUrl(repo)) {
    await checkRequestUrl(repo, "repo", egress);
    return { repo, kind: "clone" };
  }
  const path = resolve(repo);
  if (!existsSync(path) || !statSync(path).isDirectory()) {
    throw new FlotillaError("repo_not_found", `no directory at ${path}`, { field: "repo" });
  }
  try {
    const { stdout } = await git(["rev-parse", "--show-toplevel"], { cwd: path });
    return { repo: stdout.trim(), kind: "worktree" };
  } catch {
    throw new FlotillaError("repo_not_git", `${path} is not inside a git repository`, { field: "repo" });
  }
}

/** The commit a ref names in a local repository; a 4xx naming `baseRef` when it names none. */
export async function resolveCommit(cwd: string, ref: string): Promise<string> {
  try {
    const { stdout } = await git(["rev-parse", "--verify", "--quiet", `${ref}^{commit}`], { cwd });
    return stdout.trim();
  } catch {
    throw new FlotillaError("invalid_request", `ref ${JSON.stringify(ref)} does not name a commit`, {
      field: "baseRef",
    });
  }
}

/**
 * Makes the isolated checkout for a line of work: a clone of the repository (a local path or a URL)
 * on a new branch, in a staging directory under FLOTILLA_HOME until it is placed on a shard
 * (placeOnShard). A clone, never a `git worktree`: a worktree's git dir lives in the user's own
 * repository, so an agent with write access to it could plant a hook there that would run outside
 * any sandbox at the user's next commit. Objects are copied, not hard-linked, so handing the clone
 * to the agent's user never changes the owner of a file of the user's repository. Only trusted git
 * runs here (a clone and a checkout of a fresh clone, whose hooks are git's inactive samples);
 * everything later in the workspace runs through the runtime driver.
 */
export async function createWorkspace(
  home: string,
  id: string,
  sessionId: string,
  repo: string,
  kind: "worktree" | "clone",
  baseRef = "HEAD",
  egress?: EgressPolicy,
): Promise<WorkspacePlan> {
  const root = join(home, "workspaces", id);
  const path = join(root, "tree");
  const branch = `flotilla/${sessionId}`;
  mkdirSync(root, { recursive: true });
  try {
    const base = kind === "worktree" ? await resolveCommit(repo, baseRef) : undefined;
    // A URL is judged again as it is cloned (its name may resolve elsewhere by now), and pinned.
    const pin = egress && kind === "clone" && isGitUrl(repo) ? await gitEgressArgs(repo, "repo", egress) : [];
    try {
      await git([...pin, "clone", "--quiet", "--no-checkout", "--no-hardlinks", repo, path], {
        timeoutMs: 600_000,
      });
    } catch (e) {
      throw new FlotillaError("repo_clone_failed", `git clone failed: ${gitErrorText(e)}`, { field: "repo" });
    }
    const baseCommit =
      base ??
      (await resolveCommit(path, baseRef === "HEAD" ? "origin/HEAD" : baseRef).catch(() =>
        resolveCommit(path, baseRef.startsWith("origin/") ? baseRef : `origin/${baseRef}`),
      ));
    await git(["checkout", "--quiet", "-b", branch, baseCommit], { cwd: path });
    return { id, kind: "clone", repo, path, baseRef, baseCommit, branch };
  } catch (e) {
    rmSync(root, { recursive: true, force: true });
    throw e;
  }
}

/**
 * Moves a staged workspace onto its shard (`<shard>/workspaces/<wsp>/tree`), where the shard's
 * harness, execs and terminals can reach it; the runtime driver then hands it to the agent's user.
 */
export function placeOnShard(ws: WorkspacePlan, shardDir: string): WorkspacePlan {
  const from = resolve(ws.path, "..");
  const to = join(workspacesDir(shardDir), ws.id);
  mkdirSync(workspacesDir(shardDir), { recursive: true });
  renameSync(from, to);
  return { ...ws, path: join(to, "tree") };
}

/**
 * Removes a workspace's directory. One made as a worktree (before workspaces were clones) also had
 * its registration and its branch in the user's repository: both go with it. Failures there are
 * left for `flotilla gc`, which finds such branches and worktrees again.
 */
export async function removeWorkspace(w: {
  kind: string;
  repo: string;
  path: string;
  branch?: string | null;
}): Promise<void> {
  const root = resolve(w.path, "..");
  if (w.kind === "worktree") {
    // Each step is tried whatever the last one did: the user may have removed the worktree or the
    // branch by hand. Whatever is really left over, `flotilla gc` finds and lists.
    await git(["worktree", "remove", "--force", w.path], { cwd: w.repo }).catch(() => {});
    await git(["worktree", "prune"], { cwd: w.repo }).catch(() => {});
    if (w.branch?.startsWith("flotilla/"))
      await git(["branch", "-D", w.branch], { cwd: w.repo }).catch(() => {});
  }
  rmSync(root, { recursive: true, force: true });
}

/** git in a workspace, run through the runtime driver (the agent may have written its config and hooks). */
export type GitRunner = (args: string[], env?: Record<string, string>) => Promise<GitResult>;

/**
 * The workspace against its base commit, untracked files included. Uses a throwaway index so the
 * agent's own staging area is left exactly as it was.
 */
export async function workspaceDiff(
  git: GitRunner,
  path: string,
  baseCommit: string,
  opts: { binary?: boolean } = {},
): Promise<Diff> {
  // The throwaway index sits beside the tree, inside the workspace the driver's sandbox can write.
  const index = join(path, "..", `.diff-${randomBytes(6).toString("hex")}.index`);
  const env = { GIT_INDEX_FILE: index };
  try {
    await git(["read-tree", baseCommit], env);
    await git(["add", "-A", "."], env);
    const [numstat, status, patch] = await Promise.all([
      git(["diff", "--cached", "--numstat", "-z", "-M", baseCommit], env),
      git(["diff", "--cached", "--name-status", "-z", "-M", baseCommit], env),
      git(["diff", "--cached", "-M", "--no-color", ...(opts.binary ? ["--binary"] : []), baseCommit], env),
    ]);
    const statusByPath = new Map<string, string>();
    const st = status.stdout.split("\0").filter(Boolean);
    for (let i = 0; i < st.length; ) {
      const code = st[i]!;
      if (code.startsWith("R") || code.startsWith("C")) {
        statusByPath.set(st[i + 2]!, "renamed");
        i += 3;
      } else {
        statusByPath.set(st[i + 1]!, code === "A" ? "added" : code === "D" ? "deleted" : "modified");
        i += 2;
      }
    }
    const files: Diff["files"] = [];
    const ns = numstat.stdout.split("\0").filter((x) => x !== "");
    for (let i = 0; i < ns.length; i++) {
      const [add, del, name] = ns[i]!.split("\t");
      let p = name ?? "";
      if (p === "") {
        // rename: numstat -z puts old and new paths in the next two fields
        p = ns[i + 2] ?? "";
        i += 2;
      }
      const binary = add === "-";
      files.push({
        path: p,
        status: (statusByPath.get(p) ?? "modified") as Diff["files"][number]["status"],
        additions: binary ? 0 : Number(add),
        deletions: binary ? 0 : Number(del),
        binary,
      });
    }
    return {
      baseCommit,
      files,
      additions: files.reduce((a, f) => a + f.additions, 0),
      deletions: files.reduce((a, f) => a + f.deletions, 0),
      patch: patch.stdout,
    };
  } finally {
    rmSync(index, { force: true });
    rmSync(`${index}.lock`, { force: true });
  }
}
