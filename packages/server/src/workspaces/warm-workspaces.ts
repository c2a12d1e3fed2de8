import { existsSync } from "node:fs";
import { dirname } from "node:path";
import { newId } from "@flotilla/contracts";
import { defaultModel, WARMUP_MODEL } from "../agents/opencode/config.ts";
import { prewarm, warmUpTurn } from "../agents/opencode/warm.ts";
import type { Config } from "../config/config.ts";
import type { HarnessManager } from "../harnesses/manager.ts";
import { type Db, type Tx, withTx } from "../platform/db/pool.ts";
import type { Logger } from "../platform/logger.ts";
import { sqlIn } from "../sessions/status.ts";
import { placeWorkspace, type Shard, type ShardKind } from "./shards.ts";
import {
  createWorkspace,
  isGitUrl,
  placeOnShard,
  removeWorkspace,
  resolveCommit,
  type WorkspacePlan,
} from "./workspaces.ts";

/** Sessions still starting on this replica: the moments a warm workspace is for, not the time to make one. */
const STARTING_SQL = sqlIn(["queued", "provisioning"]);

interface WarmRow {
  id: string;
  project_id: string;
  repo: string;
  path: string;
  base_commit: string;
  shard_id: string;
  shard_dir: string;
  runtime: string;
  network: string;
  retired: boolean;
}

/**
 * Warm workspaces: for each hot project (a local repository with a session on this replica in the
 * last `pool.hotMs`), `pool.warmWorkspaces` checkouts of its HEAD made ahead of its next session:
 * cloned, placed on the shard its next session would go to, handed to the agent's user, and, when
 * that shard's harness is running, its directory set up by OpenCode (agents, tools, providers,
 * project state: the seconds a first prompt in a new directory otherwise spends before it asks the
 * model). A new session on that project and base commit takes one in its creating transaction
 * (`claim`) instead of cloning; only then is it given its identity (its branch, base ref, title,
 * prompt), so nothing of a session is baked into a checkout made before it.
 *
 * Refreshed when the base moves: a warm workspace whose commit is no longer its repository's HEAD
 * is removed and a new one made (a session asking for HEAD meanwhile resolves HEAD itself and never
 * takes a stale one). One that is no longer hot is removed. Made one at a time, and not while a
 * session of this replica is starting, so making one never competes with a start it is meant to speed.
 *
 * Only local repositories: a URL's HEAD cannot be read without asking its remote (left for later).
 */
export class WarmWorkspaces {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  /** Cuts a pass's waits on the harness short at shutdown. */
  private readonly abort = new AbortController();

  constructor(
    private readonly db: Db,
    private readonly harnesses: HarnessManager,
    private readonly config: Config,
    private readonly log: Logger,
  ) {}

  start(): void {
    // Turned off (or down): one pass still removes what an earlier run with them on left warm,
    // which nothing would claim any more and `flotilla gc` does not list.
    if (this.config.pool.warmWorkspaces === 0) {
      void this.kick();
      return;
    }
    this.timer = setInterval(() => void this.kick(), this.config.pool.tickMs);
  }

  /** One pass now (unless one is running); resolves when it is done. */
  kick(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.running ??= this.pass()
      .catch((err) => this.log.warn({ err }, "warm workspaces: pass failed"))
      .finally(() => (this.running = undefined));
    return this.running;
  }

  /** Whether sessions may take warm workspaces here (pool.warmWorkspaces > 0). */
  get enabled(): boolean {
    return this.config.pool.warmWorkspaces > 0;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    clearInterval(this.timer);
    await this.running;
  }

  /**
   * Takes a warm workspace of the project at `baseCommit` for a session being created, inside the
   * transaction that creates it (after the project row is locked). The checkout's branch becomes the
   * session's, run through the shard's runtime driver (the tree is the agent's user's now). Undefined
   * when none is ready: the caller makes a workspace as before.
   */
  async claim(
    tx: Tx,
    want: { projectId: string; baseCommit: string; baseRef: string; branch: string; kind: ShardKind },
  ): Promise<{ ws: WorkspacePlan; shard: Shard } | undefined> {
    if (this.config.pool.warmWorkspaces === 0) return undefined;
    const { rows } = await tx.query(
      `select w.id, w.repo, w.path, w.branch, w.shard_id, sh.dir as shard_dir
       from workspaces w join shards sh on sh.id = w.shard_id
       where w.project_id = $1 and w.base_commit = $2 and w.warm_at is not null and w.deleted_at is null
         and sh.replica = $3 and sh.runtime = $4 and sh.network = $5 and sh.retired_at is null
       order by w.warm_at limit 1 for update of w skip locked`,
      [want.projectId, want.baseCommit, this.config.replicaId, want.kind.runtime, want.kind.network],
    );
    const r = rows[0];
    if (!r) return undefined;
    const shard: Shard = { id: r.shard_id, dir: r.shard_dir, ...want.kind };
    const res = await this.harnesses
      .driverFor(shard)
      .exec({
        shard,
        cwd: r.path,
        command: ["git", "branch", "-m", want.branch],
        env: { LC_ALL: "C" },
        timeoutMs: 30_000,
      })
      .catch((e: Error) => ({ exitCode: -1, stderr: e.message }));
    if (res.exitCode !== 0) {
      // A checkout that cannot take a branch is no use to anyone: it goes, and the session is made
      // the usual way.
      this.log.warn({ workspace: r.id, stderr: res.stderr }, "warm workspace could not be claimed; removed");
      await tx.query("update workspaces set warm_at = null, deleted_at = now() where id = $1", [r.id]);
      await removeWorkspace({ kind: "clone", repo: r.repo, path: r.path }).catch(() => {
        // `flotilla gc` lists a deleted workspace's checkout that is still on disk.
      });
      return undefined;
    }
    await tx.query("update workspaces set warm_at = null, branch = $2, base_ref = $3 where id = $1", [
      r.id,
      want.branch,
      want.baseRef,
    ]);
    return {
      shard,
      ws: {
        id: r.id,
        kind: "clone",
        repo: r.repo,
        path: r.path,
        baseRef: want.baseRef,
        baseCommit: want.baseCommit,
        branch: want.branch,
      },
    };
  }

  /** One round: remove what is stale or no longer hot, then make at most one missing workspace. */
  private async pass(): Promise<void> {
    const target = this.config.pool.warmWorkspaces;
    const replica = this.config.replicaId;
    const hot = await this.db.query<{ id: string; org_id: string; repo: string }>(
      // From the recent sessions (sessions_created), not from every project: this runs every tick.
      `select distinct p.id, p.org_id, p.repo
       from sessions s join projects p on p.id = s.project_id
         join workspaces w on w.id = s.workspace_id join shards sh on sh.id = w.shard_id
       where s.created_at > now() - make_interval(secs => $2::float8 / 1000) and sh.replica = $1`,
      [replica, this.config.pool.hotMs],
    );
    const heads = new Map<string, string>();
    for (const p of hot.rows) {
      if (isGitUrl(p.repo) || !existsSync(p.repo)) continue;
      const head = await resolveCommit(p.repo, "HEAD").catch(() => undefined);
      if (head) heads.set(p.id, head);
    }
    const { rows: warm } = await this.db.query<WarmRow>(
      `select w.id, w.project_id, w.repo, w.path, w.base_commit, w.shard_id, sh.dir as shard_dir,
         sh.runtime, sh.network, sh.retired_at is not null as retired
       from workspaces w join shards sh on sh.id = w.shard_id
       where w.warm_at is not null and w.deleted_at is null and sh.replica = $1
       order by w.warm_at`,
      [replica],
    );
    const fresh = new Map<string, number>();
    for (const w of warm) {
      const why =
        heads.get(w.project_id) === undefined
          ? "its project is no longer hot"
          : heads.get(w.project_id) !== w.base_commit
            ? "its base moved"
            : w.retired || w.runtime !== this.config.runtime || w.network !== this.config.network
              ? "its shard is not where new sessions go"
              : (fresh.get(w.project_id) ?? 0) >= target
                ? "more than pool.warmWorkspaces are ready"
                : undefined;
      if (why) await this.discard(w, why);
      else fresh.set(w.project_id, (fresh.get(w.project_id) ?? 0) + 1);
    }
    if (this.stopped || target === 0) return;
    const starting = await this.db.query(
      `select 1 from sessions s join workspaces w on w.id = s.workspace_id join shards sh on sh.id = w.shard_id
       where sh.replica = $1 and s.deleted_at is null and s.status in ${STARTING_SQL} limit 1`,
      [replica],
    );
    if (starting.rowCount) return;
    const next = hot.rows.find((p) => heads.has(p.id) && (fresh.get(p.id) ?? 0) < target);
    if (next) await this.make(next, heads.get(next.id)!);
  }

  private async make(p: { id: string; org_id: string; repo: string }, head: string): Promise<void> {
    const t0 = Date.now();
    const kind = { runtime: this.config.runtime, network: this.config.network };
    const wsId = newId("wsp");
    // A placeholder branch, renamed to the session's when one claims it.
    const ws = await createWorkspace(this.config.home, wsId, wsId, p.repo, "worktree", head);
    let placed = ws;
    let shard: Shard | undefined;
    try {
      shard = await withTx(this.db, (tx) =>
        placeWorkspace(
          tx,
          this.config.home,
          this.config.replicaId,
          p.org_id,
          p.id,
          this.config.pool.workspacesPerHarness,
          (id) => this.harnesses.forShard(id) !== undefined,
          kind,
        ),
      );
      placed = placeOnShard(ws, shard.dir);
      await this.harnesses.driverFor(shard).provision(shard, [dirname(placed.path)]);
      // Claimable from here: on its shard, and the agent's user's. (A crash before this leaves a
      // checkout no row owns, which `flotilla gc` lists once it is old.)
      await this.db.query(
        `insert into workspaces (id, org_id, project_id, kind, repo, path, state_dir, shard_id, base_ref, base_commit, branch, warm_at)
         values ($1, $2, $3, 'clone', $4, $5, $6, $7, 'HEAD', $8, $9, now())`,
        [ws.id, p.org_id, p.id, ws.repo, placed.path, shard.dir, shard.id, head, ws.branch],
      );
    } catch (e) {
      await removeWorkspace(placed);
      throw e;
    }
    // The directory's set-up, on the shard's harness if it runs (a harness started later sets it up
    // on the first prompt, as for any workspace; the clone and its hand-over are saved either way).
    const h = this.harnesses.forShard(shard!.id);
    const model = defaultModel(this.config);
    const signal = this.abort.signal;
    if (h && model) await prewarm(h.client, placed.path, model, 30_000, signal);
    // Then a throwaway first turn there, on the instant warm-up model (see warmUpTurn).
    let warmedUp = false;
    if (h && this.config.warmup && !signal.aborted)
      warmedUp = await warmUpTurn(h.client, placed.path, WARMUP_MODEL, 60_000, signal).catch(
        (err: unknown) => {
          this.log.warn({ err, workspace: ws.id }, "warm workspace: warm-up turn failed");
          return false;
        },
      );
    this.log.info(
      {
        project: p.id,
        workspace: ws.id,
        shard: shard!.id,
        setUp: Boolean(h && model),
        warmedUp,
        ms: Date.now() - t0,
      },
      "warm workspace ready",
    );
  }

  private async discard(w: WarmRow, why: string): Promise<void> {
    // Taken out of reach of claims first: a session may be claiming it right now.
    const { rowCount } = await this.db.query(
      "update workspaces set warm_at = null, deleted_at = now() where id = $1 and warm_at is not null",
      [w.id],
    );
    if (!rowCount) return;
    const h = this.harnesses.forShard(w.shard_id);
    await h?.client.instance.dispose({ directory: w.path }).catch((err: unknown) => {
      this.log.warn({ err, workspace: w.id }, "warm workspace: instance dispose failed");
    });
    await removeWorkspace({ kind: "clone", repo: w.repo, path: w.path });
    this.log.info({ workspace: w.id, project: w.project_id, why }, "warm workspace removed");
  }
}
