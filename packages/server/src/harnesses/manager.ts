import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FlotillaError, type Harness, newId } from "@flotilla/contracts";
import { createOpencodeClient, type OpencodeClient } from "@opencode-ai/sdk/v2";
import { opencodeConfig } from "../agents/opencode/config.ts";
import { basicAuth, healthy } from "../agents/opencode/health.ts";
import { HarnessStream } from "../agents/opencode/stream.ts";
import type { Config } from "../config/config.ts";
import type { Db } from "../platform/db/pool.ts";
import type { Logger } from "../platform/logger.ts";
import type { HarnessRecord, RuntimeDriver } from "../runtime/driver.ts";
import { HarnessStartError } from "../runtime/driver.ts";

/** A state shard: OpenCode's own dirs, served by at most one harness at a time. */
export interface ShardRef {
  id: string;
  dir: string;
}

export interface LiveHarness {
  id: string;
  shardId: string;
  /** The harness's own working directory (empty); every request names its workspace directory. */
  cwd: string;
  url: string;
  client: OpencodeClient;
  record: HarnessRecord;
  stream: HarnessStream;
}

export interface HarnessEvents {
  onEvent(
    h: LiveHarness,
    directory: string,
    payload: { type: string; properties: Record<string, unknown> },
  ): Promise<void>;
  onConnected(h: LiveHarness): Promise<void>;
  onLost(h: { id: string; shardId: string }, reason: string): Promise<void>;
  onState(
    h: { id: string; shardId: string },
    state: "starting" | "ready" | "adopted" | "stopped",
    reason?: string,
  ): Promise<void>;
}

type Row = {
  id: string;
  shard_id: string;
  project_id: string | null;
  rss_bytes: number | null;
  sessions_served: number;
  active_sessions: number;
  driver: string;
  state: string;
  pid: number | null;
  pid_start: string | null;
  url: string | null;
  run_dir: string;
  started_at: Date;
  stopped_at: Date | null;
  reason: string | null;
};

export const harnessFromRow = (r: Row): Harness => ({
  id: r.id,
  driver: r.driver,
  state: r.state as Harness["state"],
  pid: r.pid,
  url: r.url,
  shardId: r.shard_id,
  projectId: r.project_id,
  rssBytes: r.rss_bytes,
  sessionsServed: r.sessions_served,
  activeSessions: r.active_sessions,
  startedAt: r.started_at.toISOString(),
  stoppedAt: r.stopped_at?.toISOString() ?? null,
  reason: r.reason,
});

/**
 * Keeps at most one running harness per state shard, finds harnesses of a previous run again
 * (adopt if the same process still runs, else mark lost), and watches the ones it holds.
 */
export class HarnessManager {
  private readonly live = new Map<string, LiveHarness>();
  private readonly starting = new Map<string, Promise<LiveHarness>>();
  private readonly watchers = new Set<NodeJS.Timeout>();
  private stopping = false;
  private readonly passwords = new Map<string, string>();

  constructor(
    private readonly db: Db,
    private readonly driver: RuntimeDriver,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly events: HarnessEvents,
  ) {}

  forShard(shardId: string): LiveHarness | undefined {
    for (const h of this.live.values()) if (h.shardId === shardId) return h;
    return undefined;
  }

  all(): LiveHarness[] {
    return [...this.live.values()];
  }

  /** An org's harnesses, and the warm ones not yet given to any org (capacity every org draws on). */
  async list(orgId: string): Promise<Harness[]> {
    const { rows } = await this.db.query(
      `select h.*, s.project_id from harnesses h join shards s on s.id = h.shard_id
       where s.org_id = $1 or s.org_id is null order by h.started_at desc limit 200`,
      [orgId],
    );
    return rows.map(harnessFromRow);
  }

  /** The running harness for a shard, started if there is none. Concurrent callers share one start. */
  ensure(shard: ShardRef): Promise<LiveHarness> {
    const existing = this.forShard(shard.id);
    if (existing) return Promise.resolve(existing);
    let p = this.starting.get(shard.id);
    if (!p) {
      p = this.start(shard).finally(() => this.starting.delete(shard.id));
      this.starting.set(shard.id, p);
    }
    return p;
  }

  isStarting(shardId: string): boolean {
    return this.starting.has(shardId);
  }

  private async start(ws: ShardRef): Promise<LiveHarness> {
    if (this.stopping) throw new FlotillaError("harness_unavailable", "control plane is shutting down");
    const id = newId("hrn");
    const runDir = join(this.config.home, "harnesses", id);
    const password = randomBytes(24).toString("base64url");
    await this.db.query(
      "insert into harnesses (id, shard_id, driver, state, run_dir, replica) values ($1, $2, $3, 'starting', $4, $5)",
      [id, ws.id, this.driver.name, runDir, this.config.replicaId],
    );
    await this.events.onState({ id, shardId: ws.id }, "starting");
    const log = this.log.child({ harness: id, shard: ws.id });
    const cwd = join(ws.dir, "cwd");
    mkdirSync(cwd, { recursive: true });
    const env: Record<string, string> = {
      ...this.config.providerEnv,
      OPENCODE_CONFIG_CONTENT: JSON.stringify(opencodeConfig(this.config)),
    };
    let started: Awaited<ReturnType<RuntimeDriver["start"]>>;
    const t0 = Date.now();
    try {
      started = await this.driver.start({
        harnessId: id,
        workspacePath: cwd,
        stateDir: ws.dir,
        runDir,
        env,
        password,
        readyTimeoutMs: this.config.harness.readyTimeoutMs,
        onSpawn: async (rec) => {
          await this.db.query("update harnesses set pid = $2, pid_start = $3, url = $4 where id = $1", [
            id,
            rec.pid,
            rec.pidStart,
            rec.url,
          ]);
        },
      });
    } catch (e) {
      const reason =
        e instanceof HarnessStartError ? `${e.message}: ${e.logTail.slice(-500)}` : (e as Error).message;
      log.error({ reason }, "harness failed to start");
      await this.db.query(
        "update harnesses set state = 'lost', stopped_at = now(), reason = $2 where id = $1",
        [id, reason],
      );
      throw new FlotillaError(
        "harness_unavailable",
        `agent harness failed to start: ${(e as Error).message}`,
        { cause: e },
      );
    }
    await this.db.query(
      // last_active_at: a harness that just came up is about to be used; the pool must not take it for idle.
      "update harnesses set state = 'ready', pid = $2, pid_start = $3, url = $4, ready_at = now(), last_active_at = now() where id = $1",
      [id, started.pid, started.pidStart, started.url],
    );
    log.info({ pid: started.pid, url: started.url, ms: Date.now() - t0 }, "harness ready");
    const h = this.attach(id, ws, started, password);
    // Hand the harness out only once its event stream is up, so no event of a first turn is missed.
    await Promise.race([h.stream.ready, new Promise((r) => setTimeout(r, 10_000))]);
    void started.exited.then(({ code, signal }) => {
      if (this.live.get(id) === h) void this.lose(h, `harness process exited (${signal ?? `code ${code}`})`);
    });
    await this.events.onState(h, "ready");
    return h;
  }

  private attach(
    id: string,
    ws: ShardRef,
    record: HarnessRecord & { url: string },
    password: string,
  ): LiveHarness {
    const client = createOpencodeClient({
      baseUrl: record.url,
      headers: { authorization: basicAuth(password) },
    });
    const h = {
      id,
      shardId: ws.id,
      cwd: join(ws.dir, "cwd"),
      url: record.url,
      client,
      record,
    } as LiveHarness;
    h.stream = new HarnessStream(
      record.url,
      password,
      {
        onEvent: (dir, payload) => this.events.onEvent(h, dir, payload),
        onConnected: () => this.events.onConnected(h),
        onDropped: async (reason) => {
          if (this.live.get(id) !== h) return false;
          if ((await this.driver.inspect(record)) === "running") {
            for (let i = 0; i < 6; i++) if (await healthy(record.url, password, 500)) return true;
          }
          void this.lose(h, `harness stopped answering (${reason})`);
          return false;
        },
      },
      this.log.child({ harness: id }),
    );
    this.live.set(id, h);
    this.passwords.set(id, password);
    // A process we did not spawn gives no exit event; poll its identity instead.
    const timer = setInterval(() => {
      void this.driver.inspect(record).then((s) => {
        if (s === "gone" && this.live.get(id) === h) void this.lose(h, "harness process is gone");
      });
    }, this.config.harness.healthIntervalMs);
    timer.unref();
    this.watchers.add(timer);
    (h as { timer?: NodeJS.Timeout }).timer = timer;
    return h;
  }

  /** A health probe with a short deadline: early and wedged requests can hang (OPENCODE.md). */
  healthy(h: LiveHarness, timeoutMs: number): Promise<boolean> {
    return healthy(h.url, this.passwords.get(h.id) ?? "", timeoutMs);
  }

  /** Counts a session placed on the harness (for recycling) and marks it active now. */
  async noteSession(h: LiveHarness): Promise<void> {
    await this.db.query(
      "update harnesses set sessions_served = sessions_served + 1, last_active_at = now() where id = $1",
      [h.id],
    );
  }

  private detach(h: LiveHarness): void {
    this.live.delete(h.id);
    this.passwords.delete(h.id);
    const t = (h as { timer?: NodeJS.Timeout }).timer;
    if (t) {
      clearInterval(t);
      this.watchers.delete(t);
    }
  }

  /** Treats a harness as dead (its health check hangs, say): kill it and tell its sessions. */
  async replace(h: LiveHarness, reason: string): Promise<void> {
    await this.lose(h, reason);
  }

  /** Resident memory of a live harness, from its driver. */
  stats(h: LiveHarness): Promise<{ rssBytes: number }> {
    return this.driver.stats(h.record);
  }

  private async lose(h: LiveHarness, reason: string): Promise<void> {
    if (this.live.get(h.id) !== h) return;
    this.detach(h);
    this.log.warn({ harness: h.id, reason }, "harness lost");
    void h.stream.stop();
    await this.db.query(
      "update harnesses set state = 'lost', stopped_at = now(), reason = $2 where id = $1",
      [h.id, reason],
    );
    await this.driver.stop(h.record, 1000).catch(() => {});
    await this.events.onLost(h, reason);
  }

  async stop(h: LiveHarness, reason: string): Promise<void> {
    this.detach(h);
    await this.db.query("update harnesses set state = 'stopping' where id = $1", [h.id]);
    await h.stream.stop();
    await this.driver.stop(h.record, this.config.harness.stopGraceMs);
    await this.db.query(
      "update harnesses set state = 'stopped', stopped_at = now(), reason = $2 where id = $1",
      [h.id, reason],
    );
    await this.events.onState(h, "stopped", reason);
  }

  /**
   * After a restart: a harness of this replica recorded as live is adopted when its pid still names the same
   * process (pid + start time, never a match by name), else marked lost.
   */
  async adoptAll(): Promise<void> {
    const { rows } = await this.db.query<Row & { dir: string }>(
      `select h.*, s.dir from harnesses h join shards s on s.id = h.shard_id
       where h.state in ('starting', 'ready', 'stopping') and (h.replica = $1 or h.replica is null)`,
      [this.config.replicaId],
    );
    for (const r of rows) {
      const record: HarnessRecord = {
        harnessId: r.id,
        pid: r.pid,
        pidStart: r.pid_start,
        url: r.url,
        runDir: r.run_dir,
      };
      let password = "";
      try {
        password = readFileSync(join(r.run_dir, "password"), "utf8");
      } catch {}
      const alive =
        r.state === "ready" && r.url && password && (await this.driver.inspect(record)) === "running";
      if (alive && (await healthy(r.url!, password, 2000))) {
        this.log.info({ harness: r.id, pid: r.pid }, "adopted harness from a previous run");
        this.attach(r.id, { id: r.shard_id, dir: r.dir }, { ...record, url: r.url! }, password);
        await this.events.onState({ id: r.id, shardId: r.shard_id }, "adopted");
        continue;
      }
      const reason = alive
        ? "harness from a previous run does not answer"
        : "harness from a previous run is gone";
      await this.driver.stop(record, 1000).catch(() => {});
      await this.db.query(
        "update harnesses set state = 'lost', stopped_at = now(), reason = $2 where id = $1",
        [r.id, reason],
      );
      await this.events.onLost({ id: r.id, shardId: r.shard_id }, reason);
    }
  }

  async stopAll(reason: string): Promise<void> {
    this.stopping = true;
    await Promise.allSettled([...this.starting.values()]);
    await Promise.allSettled(this.all().map((h) => this.stop(h, reason)));
  }
}
