import type { Config } from "../config/config.ts";
import { type Db, withTx } from "../platform/db/pool.ts";
import type { Logger } from "../platform/logger.ts";
import { WORKING_SQL } from "../sessions/status.ts";
import { createShard } from "../workspaces/shards.ts";
import type { HarnessManager } from "./manager.ts";

/**
 * The harness pool's housekeeping, one tick at a time: keep `warm` ready harnesses over fresh
 * shards, sample each harness's memory and load into the database (for the scheduler and for
 * operators), replace a harness whose health check hangs, recycle one that served too many sessions
 * or grew too big (once it is idle), and stop harnesses idle for longer than `idleMs`.
 */
export class HarnessPool {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly failures = new Map<string, { count: number; since: number }>();
  private stopped = false;

  constructor(
    private readonly db: Db,
    private readonly harnesses: HarnessManager,
    private readonly config: Config,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      if (!this.running) this.running = this.tick().finally(() => (this.running = undefined));
    }, this.config.pool.tickMs);
    this.running = this.tick().finally(() => (this.running = undefined));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }

  async tick(): Promise<void> {
    try {
      await this.sample();
      if (!this.stopped) await this.topUp();
    } catch (err) {
      this.log.warn({ err }, "pool tick failed");
    }
  }

  private async sample(): Promise<void> {
    const pool = this.config.pool;
    const live = this.harnesses.all();
    if (live.length === 0) return;
    const { rows } = await this.db.query(
      `select h.id, h.sessions_served, h.last_active_at, sh.project_id,
         (select count(*)::int from workspaces w join sessions s on s.workspace_id = w.id
          where w.shard_id = h.shard_id and s.deleted_at is null
            and s.status in ${WORKING_SQL}) as active
       from harnesses h join shards sh on sh.id = h.shard_id where h.id = any($1::text[])`,
      [live.map((h) => h.id)],
    );
    const byId = new Map(rows.map((r) => [r.id as string, r]));
    let warmKept = 0;
    for (const h of live) {
      const r = byId.get(h.id);
      if (!r) continue;
      // A harness whose health check hangs is as good as dead (OPENCODE.md): replace it.
      const ok = await this.harnesses.healthy(h, 2000);
      const prev = this.failures.get(h.id);
      const failing = ok ? undefined : { count: (prev?.count ?? 0) + 1, since: prev?.since ?? Date.now() };
      if (failing) this.failures.set(h.id, failing);
      else this.failures.delete(h.id);
      if (
        failing &&
        failing.count >= pool.healthFailures &&
        Date.now() - failing.since >= pool.healthGraceMs
      ) {
        this.failures.delete(h.id);
        await this.harnesses.replace(h, `health check failed ${failing.count} times in a row`);
        continue;
      }
      const { rssBytes } = await this.harnesses.stats(h);
      await this.db.query(
        `update harnesses set rss_bytes = $2, active_sessions = $3,
           last_active_at = case when $3 > 0 then now() else last_active_at end where id = $1`,
        [h.id, rssBytes, r.active],
      );
      if (r.active > 0 || this.stopped) continue;
      const warm = r.project_id === null;
      if (warm && warmKept < pool.warm) {
        warmKept++;
        continue;
      }
      const recycle =
        r.sessions_served >= pool.maxSessionsPerHarness
          ? `recycled after ${r.sessions_served} sessions`
          : rssBytes > pool.recycleMemoryMb * 1024 * 1024
            ? `recycled at ${Math.round(rssBytes / 1048576)} MB`
            : undefined;
      const idleFor = Date.now() - new Date(r.last_active_at).getTime();
      const reason =
        recycle ?? (idleFor >= pool.idleMs ? `idle for ${Math.round(idleFor / 1000)} s` : undefined);
      // Re-checked as it stops: a session may have come to it since the sample.
      if (reason && (await this.harnesses.stopIfIdle(h, reason)))
        this.log.info({ harness: h.id, reason }, "stopped harness");
    }
  }

  /** Starts harnesses over fresh, unassigned shards until `warm` are ready or starting. */
  private async topUp(): Promise<void> {
    const want = this.config.pool.warm;
    if (want === 0) return;
    const { rows } = await this.db.query(
      `select sh.id, sh.dir, sh.runtime, sh.network from shards sh
       where sh.project_id is null and sh.retired_at is null and sh.replica = $1 and sh.runtime = $2 and sh.network = $3
       order by sh.created_at`,
      [this.config.replicaId, this.config.runtime, this.config.network],
    );
    let have = 0;
    for (const r of rows) {
      if (have >= want) break;
      if (this.harnesses.forShard(r.id) || this.harnesses.isStarting(r.id)) {
        have++;
        continue;
      }
      // A warm shard whose harness is gone (a restart, a crash): give it a harness again.
      have++;
      // Warm capacity takes a free slot or none: it never waits for, or evicts, real work.
      void this.harnesses
        .ensureIfFree({ id: r.id, dir: r.dir, runtime: r.runtime, network: r.network })
        ?.catch((err) => this.log.warn({ err }, "warm harness failed to start"));
    }
    for (; have < want && this.harnesses.hasFreeSlot(); have++) {
      const shard = await withTx(this.db, (tx) =>
        createShard(tx, this.config.home, this.config.replicaId, null, {
          runtime: this.config.runtime,
          network: this.config.network,
        }),
      );
      const started = this.harnesses.ensureIfFree(shard);
      if (!started) break;
      void started.catch((err) => this.log.warn({ err }, "warm harness failed to start"));
    }
  }
}
