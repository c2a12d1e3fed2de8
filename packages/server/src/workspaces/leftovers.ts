import { existsSync, readdirSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import type { GcResult, Leftover } from "@flotilla/contracts";
import type { Config } from "../config/config.ts";
import type { Db } from "../platform/db/pool.ts";
import type { Logger } from "../platform/logger.ts";
import { workspacesDir } from "../runtime/shard-layout.ts";
import { git } from "./git.ts";
import { isGitUrl, removeWorkspace } from "./workspaces.ts";

/** A checkout on disk younger than this may be one being made right now (its row comes after it). */
const YOUNG_MS = 15 * 60_000;
/** How long the overview's count of leftovers is reused. */
const COUNT_TTL_MS = 60_000;

/** Branches Flotilla made in users' repositories before workspaces were clones, and refs a crashed merge left. */
const OURS = /^refs\/(heads\/flotilla\/ses_[A-Za-z0-9]+|flotilla\/.+)$/;

interface WorkspaceRow {
  id: string;
  kind: string;
  repo: string;
  path: string;
  branch: string | null;
  live: boolean;
}

/**
 * What no live session owns any more, on this replica: workspaces whose sessions were all deleted
 * without their workspace; checkout directories no workspace row owns (a crash between making one
 * and recording it); and `flotilla/ses_*` branches or `refs/flotilla/*` refs in users' local
 * repositories that no live workspace uses (left by versions that made worktrees, or a merge cut
 * short). `flotilla gc` lists and removes them.
 */
export class Leftovers {
  private cached: { at: number; count: number } | undefined;

  constructor(
    private readonly db: Db,
    private readonly config: Config,
    private readonly logger: Logger,
  ) {}

  async list(): Promise<Leftover[]> {
    const { rows: workspaces } = await this.db.query<WorkspaceRow>(
      `select w.id, w.kind, w.repo, w.path, w.branch,
         (w.deleted_at is null and (
            exists (select 1 from sessions s where s.workspace_id = w.id and s.deleted_at is null)
            or w.warm_at is not null)) as live -- a warm workspace waits for its session
       from workspaces w left join shards sh on sh.id = w.shard_id
       where sh.replica is null or sh.replica = $1`,
      [this.config.replicaId],
    );
    const out: Leftover[] = [];
    const owned = new Set<string>();
    for (const w of workspaces) {
      owned.add(resolve(w.path, ".."));
      if (!w.live && existsSync(w.path))
        out.push({
          kind: "workspace",
          id: w.id,
          path: w.path,
          repo: w.repo,
          detail: "every session of this workspace is deleted; its checkout is still on disk",
        });
    }
    for (const dir of await this.checkoutDirs()) {
      if (owned.has(dir)) continue;
      const age = Date.now() - statSync(dir).mtimeMs;
      if (age < YOUNG_MS) continue;
      out.push({ kind: "directory", id: dir, path: dir, repo: null, detail: "a checkout no workspace owns" });
    }
    const liveBranches = new Set(
      workspaces
        .filter((w) => w.live && w.kind === "worktree" && w.branch)
        .map((w) => `${w.repo}\0${w.branch}`),
    );
    const repos = [...new Set(workspaces.map((w) => w.repo).filter((r) => !isGitUrl(r) && existsSync(r)))];
    for (const repo of repos) {
      const refs = await git(
        ["for-each-ref", "--format=%(refname)", "refs/heads/flotilla/", "refs/flotilla/"],
        {
          cwd: repo,
        },
      ).catch(() => ({ stdout: "" }));
      for (const ref of refs.stdout.split("\n").filter((r) => OURS.test(r))) {
        const branch = ref.replace(/^refs\/heads\//, "");
        if (liveBranches.has(`${repo}\0${branch}`)) continue;
        out.push({
          kind: "branch",
          id: `${repo}:${ref}`,
          path: ref,
          repo,
          detail: ref.startsWith("refs/heads/")
            ? "a branch of a session that no longer has a workspace"
            : "a temporary ref of a merge that did not finish",
        });
      }
    }
    this.cached = { at: Date.now(), count: out.length };
    return out;
  }

  /** How many there are, for the overview: read again at most once a minute. */
  async count(): Promise<number> {
    if (this.cached && Date.now() - this.cached.at < COUNT_TTL_MS) return this.cached.count;
    return (await this.list()).length;
  }

  async gc(remove: boolean): Promise<GcResult> {
    const items = await this.list();
    if (!remove) return { items, removed: 0 };
    let removed = 0;
    for (const l of items) {
      try {
        await this.remove(l);
        removed++;
      } catch (err) {
        this.logger.warn({ err, leftover: l.id }, "could not remove a leftover");
      }
    }
    this.cached = undefined;
    return { items, removed };
  }

  private async remove(l: Leftover): Promise<void> {
    if (l.kind === "workspace") {
      const { rows } = await this.db.query<WorkspaceRow>(
        "select id, kind, repo, path, branch, false as live from workspaces where id = $1",
        [l.id],
      );
      if (!rows[0]) return;
      await removeWorkspace(rows[0]);
      await this.db.query("update workspaces set deleted_at = coalesce(deleted_at, now()) where id = $1", [
        l.id,
      ]);
    } else if (l.kind === "directory") {
      rmSync(l.path, { recursive: true, force: true });
    } else if (l.repo) {
      await git(["worktree", "prune"], { cwd: l.repo }).catch(() => {
        // A worktree still registered for the branch only makes the deletion below fail, which is reported.
      });
      await git(["update-ref", "-d", l.path], { cwd: l.repo });
    }
  }

  /** Workspaces' directories on this replica's shards, and in the staging area before placement. */
  private async checkoutDirs(): Promise<string[]> {
    const { rows } = await this.db.query<{ dir: string }>(
      "select dir from shards where replica is null or replica = $1",
      [this.config.replicaId],
    );
    const parents = [join(this.config.home, "workspaces"), ...rows.map((r) => workspacesDir(r.dir))];
    const out: string[] = [];
    for (const p of parents) {
      if (!existsSync(p)) continue;
      for (const e of readdirSync(p, { withFileTypes: true }))
        if (e.isDirectory() && e.name.startsWith("wsp_")) out.push(join(p, e.name));
    }
    return out;
  }
}
