import { existsSync, mkdirSync, rmSync, statSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { join, resolve } from "node:path";
import { type Diff, FlotillaError } from "@flotilla/contracts";
import { git, gitErrorText } from "./git.ts";

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

/** Normalises and checks a repo reference; throws a 4xx naming the field, touching nothing. */
export async function resolveRepo(repo: string): Promise<{ repo: string; kind: "worktree" | "clone" }> {
  if (isGitUrl(repo)) return { repo, kind: "clone" };
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

async function resolveCommit(cwd: string, ref: string): Promise<string> {
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
 * Makes the isolated checkout for a line of work: a `git worktree` on a new branch for a local
 * repository, a clone for a URL. The agent's own state lives in the workspace's shard (shards.ts).
 */
export async function createWorkspace(
  home: string,
  id: string,
  sessionId: string,
  repo: string,
  kind: "worktree" | "clone",
  baseRef = "HEAD",
): Promise<WorkspacePlan> {
  const root = join(home, "workspaces", id);
  const path = join(root, "tree");
  const branch = `flotilla/${sessionId}`;
  mkdirSync(root, { recursive: true });
  try {
    if (kind === "worktree") {
      const baseCommit = await resolveCommit(repo, baseRef);
      await git(["worktree", "add", "--quiet", "-b", branch, path, baseCommit], { cwd: repo });
      return { id, kind, repo, path, baseRef, baseCommit, branch };
    }
    try {
      await git(["clone", "--quiet", "--no-checkout", repo, path], { timeoutMs: 600_000 });
    } catch (e) {
      throw new FlotillaError("repo_clone_failed", `git clone failed: ${gitErrorText(e)}`, { field: "repo" });
    }
    const baseCommit = await resolveCommit(path, baseRef === "HEAD" ? "origin/HEAD" : baseRef).catch(() =>
      resolveCommit(path, baseRef.startsWith("origin/") ? baseRef : `origin/${baseRef}`),
    );
    await git(["checkout", "--quiet", "-b", branch, baseCommit], { cwd: path });
    return { id, kind, repo, path, baseRef, baseCommit, branch };
  } catch (e) {
    rmSync(root, { recursive: true, force: true });
    if (kind === "worktree") await git(["worktree", "prune"], { cwd: repo }).catch(() => {});
    throw e;
  }
}

export async function removeWorkspace(w: { kind: string; repo: string; path: string }): Promise<void> {
  const root = resolve(w.path, "..");
  if (w.kind === "worktree") {
    await git(["worktree", "remove", "--force", w.path], { cwd: w.repo }).catch(() => {});
    await git(["worktree", "prune"], { cwd: w.repo }).catch(() => {});
  }
  rmSync(root, { recursive: true, force: true });
}

/**
 * The workspace against its base commit, untracked files included. Uses a throwaway index so the
 * agent's own staging area is left exactly as it was.
 */
export async function workspaceDiff(path: string, baseCommit: string): Promise<Diff> {
  const tmp = await mkdtemp(join(path, "..", ".diff-"));
  const env = { GIT_INDEX_FILE: join(tmp, "index") };
  try {
    await git(["read-tree", baseCommit], { cwd: path, env });
    await git(["add", "-A", "."], { cwd: path, env });
    const [numstat, status, patch] = await Promise.all([
      git(["diff", "--cached", "--numstat", "-z", "-M", baseCommit], { cwd: path, env }),
      git(["diff", "--cached", "--name-status", "-z", "-M", baseCommit], { cwd: path, env }),
      git(["diff", "--cached", "-M", "--no-color", baseCommit], { cwd: path, env }),
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
    rmSync(tmp, { recursive: true, force: true });
  }
}
