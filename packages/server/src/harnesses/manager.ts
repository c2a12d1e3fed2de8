import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { FlotillaError, type Harness, newId } from "@flotilla/contracts";
import { createOpencodeClient, type OpencodeClient } from "@opencode-ai/sdk/v2";
import {
  modelEndpoints,
  opencodeConfig,
  opencodeServerEnv,
  unfrontedProviderEnv,
} from "../agents/opencode/config.ts";
import { basicAuth, healthy } from "../agents/opencode/health.ts";
import { HarnessStream } from "../agents/opencode/stream.ts";
import type { Config } from "../config/config.ts";
import { newGatewayToken } from "../gateway/gateway.ts";
import { backoffMs } from "../platform/backoff.ts";
import type { Db } from "../platform/db/pool.ts";
import type { Logger } from "../platform/logger.ts";
import { detached, inSpan, tracedFetch } from "../platform/tracing.ts";
import {
  type DriverRegistry,
  type HarnessRecord,
  HarnessStartError,
  type NetworkPolicy,
  type RuntimeDriver,
} from "../runtime/driver.ts";
import { PLACED_SQL, WORKING_SQL } from "../sessions/status.ts";
import { Admission, type QueueListener } from "./admission.ts";

/** A state shard: OpenCode's own dirs, served by at most one harness at a time. */
export interface ShardRef {
  id: string;
  dir: string;
  /** The runtime driver that runs this shard's harness, execs and terminals, for life. */
  runtime: string;
  network: NetworkPolicy;
}

export interface LiveHarness {
  id: string;
  shardId: string;
  /** The harness's own working directory (empty); every request names its workspace directory. */
  cwd: string;
  url: string;
  client: OpencodeClient;
  record: HarnessRecord;
  shard: ShardRef;
  stream: HarnessStream;
}

export interface HarnessEvents {
  onEvent(
    h: LiveHarness,
    directory: string,
    payload: { type: string; properties: Record<string, unknown> },
    /** `performance.now()` when the frame was read off the harness's stream. */
    receivedAt: number,
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
  ref: HarnessRecord["ref"] | null;
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
  warning: r.driver === "local" ? LOCAL_WARNING : null,
});

export const LOCAL_WARNING =
  "runtime local: not sandboxed; an agent here can read and change everything the control plane can";

/**
 * Keeps at most one running harness per state shard, finds harnesses of a previous run again
 * (adopt if the same process still runs, else mark lost), and watches the ones it holds.
 */
export class HarnessManager {
  private readonly live = new Map<string, LiveHarness>();
  private readonly starting = new Map<string, Promise<LiveHarness>>();
  /** Shards whose idle harness is being checked and stopped: ensure() for them waits for the outcome. */
  private readonly idleStops = new Map<string, Promise<void>>();
  private readonly watchers = new Set<NodeJS.Timeout>();
  private stopping = false;
  private readonly passwords = new Map<string, string>();
  /** The admission slot each live harness holds, given back when it stops or is lost. */
  private readonly slots = new Map<string, () => void>();
  private readonly admission: Admission;

  constructor(
    private readonly db: Db,
    private readonly drivers: DriverRegistry,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly events: HarnessEvents,
  ) {
    const s = config.scheduler;
    this.admission = new Admission(Math.max(1, Math.floor(s.memoryBudgetMb / s.harnessMemoryMb)), () =>
      this.evictIdle(),
    );
  }

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

  /**
   * The running harness for a shard, started if there is none. Concurrent callers share one start.
   * Every harness start is admitted against the budget (see Admission): beyond it, the caller waits
   * in line (told its position through onQueued) until a harness stops or an idle one is evicted.
   * A start that fails is tried again with back-off before the failure reaches the caller.
   */
  ensure(shard: ShardRef, opts: { onQueued?: QueueListener } = {}): Promise<LiveHarness> {
    const idleStop = this.idleStops.get(shard.id);
    if (idleStop) return idleStop.then(() => this.ensure(shard, opts));
    const existing = this.forShard(shard.id);
    if (existing) return Promise.resolve(existing);
    let p = this.starting.get(shard.id);
    if (!p) {
      p = this.admitAndStart(shard, opts.onQueued).finally(() => this.starting.delete(shard.id));
      this.starting.set(shard.id, p);
    } else if (opts.onQueued) this.admission.listen(shard.id, opts.onQueued);
    return p;
  }

  /** Starts a harness for a warm shard only if a slot is free now: warm capacity never waits or evicts. */
  ensureIfFree(shard: ShardRef): Promise<LiveHarness> | undefined {
    if (this.forShard(shard.id) || this.starting.has(shard.id)) return undefined;
    if (!this.admission.hasFreeSlot()) return undefined;
    return this.ensure(shard);
  }

  hasFreeSlot(): boolean {
    return this.admission.hasFreeSlot();
  }

  /** How many harnesses may run at once on this replica, and how many wait for a slot. */
  capacity(): { budget: number; waiting: number } {
    return { budget: this.admission.budget, waiting: this.admission.waiting() };
  }

  private async admitAndStart(shard: ShardRef, onQueued?: QueueListener): Promise<LiveHarness> {
    const release = await this.admission.acquire(shard.id, onQueued);
    if (this.stopping) {
      release();
      throw new FlotillaError("harness_unavailable", "control plane is shutting down");
    }
    let started: LiveHarness | undefined;
    try {
      const attempts = this.config.harness.startAttempts;
      for (let n = 1; ; n++) {
        try {
          started = await inSpan<LiveHarness>(
            "harness.start",
            {
              "flotilla.shard.id": shard.id,
              "flotilla.runtime": shard.runtime,
              "flotilla.harness.attempt": n,
            },
            (span) =>
              this.start(shard).then((h) => {
                span.setAttribute("flotilla.harness.id", h.id);
                return h;
              }),
          );
          break;
        } catch (e) {
          if (n >= attempts || this.stopping) throw e;
          const wait = backoffMs(n, 500, 8000);
          this.log.warn(
            { shard: shard.id, attempt: n, retryInMs: wait, err: (e as Error).message },
            "harness start failed; retrying",
          );
          await new Promise((r) => setTimeout(r, wait));
        }
      }
      // The slot is held for as long as the harness process lives: freeSlot() gives it back once
      // the process is stopped, so a replacement never overlaps the harness it replaces.
      this.slots.set(started.id, release);
      return started;
    } catch (e) {
      release();
      throw e;
    }
  }

  /**
   * Makes room for a waiting start: stops the least recently active harness that serves no active
   * session (an idle project's, or a warm one). True when one was stopped. Queued sessions count as
   * active: a harness that has just come up for sessions still marked queued is theirs.
   */
  private async evictIdle(): Promise<boolean> {
    const ids = this.all().map((h) => h.id);
    if (ids.length === 0) return false;
    const { rows } = await this.db.query(
      `select h.id from harnesses h
       where h.id = any($1) and not exists (
         select 1 from workspaces w join sessions s on s.workspace_id = w.id
         where w.shard_id = h.shard_id and s.deleted_at is null
           and s.status in ${PLACED_SQL})
       order by h.last_active_at asc limit 1`,
      [ids],
    );
    const h = rows[0] && this.live.get(rows[0].id);
    if (!h) return false;
    const stopped = await this.stopIfIdle(h, "evicted: its slot was needed by waiting work", PLACED_SQL);
    if (stopped) this.log.info({ harness: h.id }, "evicted an idle harness to make room");
    return stopped;
  }

  /**
   * Stops a harness that was seen idle, unless a session has come to it since. The check and the
   * stop are one step as far as ensure() is concerned: a session asking for this shard's harness
   * meanwhile waits, then gets this harness (it was busy after all) or a new one (it was stopped).
   * A session that took the harness before the check is already counted by it (a session is
   * `provisioning` from the moment it exists), so no session is ever handed a harness being stopped.
   * `statuses`: the session statuses that count as using it.
   */
  async stopIfIdle(h: LiveHarness, reason: string, statuses = WORKING_SQL): Promise<boolean> {
    if (this.live.get(h.id) !== h || this.idleStops.has(h.shardId)) return false;
    let settle!: () => void;
    this.idleStops.set(h.shardId, new Promise<void>((r) => (settle = r)));
    try {
      const { rows } = await this.db.query(
        `select count(*)::int as c from workspaces w join sessions s on s.workspace_id = w.id
         where w.shard_id = $1 and s.deleted_at is null and s.status in ${statuses}`,
        [h.shardId],
      );
      if (rows[0].c > 0) return false;
      await this.stop(h, reason);
      return true;
    } finally {
      this.idleStops.delete(h.shardId);
      settle();
    }
  }

  /** The driver that runs a shard: its harness, and every exec and terminal over its workspaces. */
  driverFor(shard: { runtime: string }): RuntimeDriver {
    return this.drivers.get(shard.runtime);
  }

  private driverOf(record: HarnessRecord): RuntimeDriver {
    return this.drivers.get(record.driver);
  }

  isStarting(shardId: string): boolean {
    return this.starting.has(shardId);
  }

  private async start(ws: ShardRef): Promise<LiveHarness> {
    if (this.stopping) throw new FlotillaError("harness_unavailable", "control plane is shutting down");
    const id = newId("hrn");
    const runDir = join(this.config.home, "harnesses", id);
    const password = randomBytes(24).toString("base64url");
    // The harness's key to the model gateway: good while it lives, for the sessions it serves.
    const gateway = newGatewayToken();
    await this.db.query(
      `insert into harnesses (id, shard_id, driver, state, run_dir, replica, gateway_token_hash)
       values ($1, $2, $3, 'starting', $4, $5, $6)`,
      [id, ws.id, ws.runtime, runDir, this.config.replicaId, gateway.hash],
    );
    await this.events.onState({ id, shardId: ws.id }, "starting");
    const log = this.log.child({ harness: id, shard: ws.id });
    const env: Record<string, string> = {
      ...opencodeServerEnv(ws, password),
      ...unfrontedProviderEnv(this.config),
      OPENCODE_CONFIG_CONTENT: JSON.stringify(opencodeConfig(this.config, gateway.token)),
    };
    let started: Awaited<ReturnType<RuntimeDriver["start"]>>;
    const t0 = Date.now();
    try {
      started = await inSpan(
        "runtime.start",
        { "flotilla.harness.id": id, "flotilla.runtime": ws.runtime },
        () =>
          this.driverFor(ws).start({
            harnessId: id,
            shard: ws,
            runDir,
            env,
            password,
            readyTimeoutMs: this.config.harness.readyTimeoutMs,
            network: ws.network,
            egress: modelEndpoints(this.config),
            onSpawn: (rec) => this.record(id, rec),
          }),
      );
    } catch (e) {
      const reason =
        e instanceof HarnessStartError && e.logTail.trim()
          ? `${e.message}; its log ends: ${e.logTail.trim().slice(-500)}`
          : (e as Error).message;
      log.error({ reason }, "harness failed to start");
      await this.db.query(
        "update harnesses set state = 'lost', stopped_at = now(), reason = $2 where id = $1",
        [id, reason],
      );
      // The log's tail says why (a missing binary, a bad config): the session that waited shows it.
      throw new FlotillaError("harness_unavailable", `agent harness failed to start: ${reason}`, {
        cause: e,
      });
    }
    await this.db.query(
      // last_active_at: a harness that just came up is about to be used; the pool must not take it for idle.
      "update harnesses set state = 'ready', ready_at = now(), last_active_at = now() where id = $1",
      [id],
    );
    await this.record(id, started);
    log.info(
      { driver: started.driver, ref: started.ref, url: started.endpoint, ms: Date.now() - t0 },
      "harness ready",
    );
    // The harness outlives the start that made it: its stream, timers and exit watch belong to no trace.
    const h = detached(() => this.attach(id, ws, started, password));
    // Hand the harness out only once its event stream is up, so no event of a first turn is missed.
    await Promise.race([h.stream.ready, new Promise((r) => setTimeout(r, 10_000))]);
    detached(() =>
      started.exited.then(({ code, signal }) => {
        if (this.live.get(id) === h)
          void this.lose(h, `harness process exited (${signal ?? `code ${code}`})`).catch(this.loseFailed);
      }),
    );
    await this.events.onState(h, "ready");
    return h;
  }

  private attach(
    id: string,
    ws: ShardRef,
    record: HarnessRecord & { endpoint: string },
    password: string,
  ): LiveHarness {
    const client = createOpencodeClient({
      baseUrl: record.endpoint,
      headers: { authorization: basicAuth(password) },
      // Each request carries the caller's trace context (`traceparent`), when there is one.
      fetch: tracedFetch,
    });
    const h = {
      id,
      shardId: ws.id,
      cwd: join(ws.dir, "cwd"),
      url: record.endpoint,
      client,
      record,
      shard: ws,
    } as LiveHarness;
    h.stream = new HarnessStream(
      record.endpoint,
      password,
      {
        onEvent: (dir, payload, at) => this.events.onEvent(h, dir, payload, at),
        onConnected: () => this.events.onConnected(h),
        onDropped: async (reason) => {
          if (this.live.get(id) !== h) return false;
          if ((await this.driverOf(record).inspect(record)) === "running") {
            for (let i = 0; i < 6; i++) if (await healthy(record.endpoint, password, 500)) return true;
          }
          void this.lose(h, `harness stopped answering (${reason})`).catch(this.loseFailed);
          return false;
        },
      },
      this.log.child({ harness: id }),
    );
    this.live.set(id, h);
    this.passwords.set(id, password);
    // A process we did not spawn gives no exit event; poll its identity instead.
    const timer = setInterval(() => {
      void this.driverOf(record)
        .inspect(record)
        .then((s) => {
          if (s === "gone" && this.live.get(id) === h)
            void this.lose(h, "harness process is gone").catch(this.loseFailed);
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

  private freeSlot(id: string): void {
    this.slots.get(id)?.();
    this.slots.delete(id);
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
    return this.driverOf(h.record).stats(h.record);
  }

  /** A loss that could not be recorded (the database away, say) must not take the process down. */
  private readonly loseFailed = (err: unknown) => this.log.error({ err }, "recording a lost harness failed");

  private async lose(h: LiveHarness, reason: string): Promise<void> {
    if (this.live.get(h.id) !== h) return;
    this.detach(h);
    this.log.warn({ harness: h.id, reason }, "harness lost");
    void h.stream.stop();
    // Not recorded (the database away): its sessions are still told below (their handler waits for
    // the database); the row is judged again at the next boot's adoption, which finds it gone.
    await this.db
      .query("update harnesses set state = 'lost', stopped_at = now(), reason = $2 where id = $1", [
        h.id,
        reason,
      ])
      .catch(this.loseFailed);
    await this.driverOf(h.record)
      .stop(h.record, 1000)
      .catch((err: unknown) => this.log.warn({ err, harness: h.id }, "could not stop the lost harness"));
    this.freeSlot(h.id);
    await this.events.onLost(h, reason);
  }

  async stop(h: LiveHarness, reason: string): Promise<void> {
    this.detach(h);
    await this.db.query("update harnesses set state = 'stopping' where id = $1", [h.id]);
    await h.stream.stop();
    await this.driverOf(h.record).stop(h.record, this.config.harness.stopGraceMs);
    await this.db.query(
      "update harnesses set state = 'stopped', stopped_at = now(), reason = $2 where id = $1",
      [h.id, reason],
    );
    this.freeSlot(h.id);
    await this.events.onState(h, "stopped", reason);
  }

  /**
   * After a restart: a harness of this replica recorded as live is adopted when its pid still names the same
   * process (pid + start time, never a match by name), else marked lost.
   */
  async adoptAll(): Promise<void> {
    const { rows } = await this.db.query<Row & { dir: string; runtime: string; network: NetworkPolicy }>(
      `select h.*, s.dir, s.runtime, s.network from harnesses h join shards s on s.id = h.shard_id
       where h.state in ('starting', 'ready', 'stopping') and (h.replica = $1 or h.replica is null)`,
      [this.config.replicaId],
    );
    for (const r of rows) {
      const record: HarnessRecord = {
        harnessId: r.id,
        driver: r.driver,
        // Harnesses recorded before drivers had their own ref kept a pid and its start time.
        ref: r.ref ?? { pid: r.pid, pidStart: r.pid_start },
        endpoint: r.url,
        runDir: r.run_dir,
      };
      let password = "";
      try {
        password = readFileSync(join(r.run_dir, "password"), "utf8");
      } catch {
        // No password file: the harness cannot be talked to, so it is not adopted (below).
      }
      const driver = this.drivers.has(r.driver) ? this.driverOf(record) : undefined;
      const alive =
        driver && r.state === "ready" && r.url && password && (await driver.inspect(record)) === "running";
      if (alive && (await healthy(r.url!, password, 2000))) {
        this.log.info(
          { harness: r.id, driver: r.driver, ref: record.ref },
          "adopted harness from a previous run",
        );
        const shard = { id: r.shard_id, dir: r.dir, runtime: r.runtime, network: r.network };
        this.attach(r.id, shard, { ...record, endpoint: r.url! }, password);
        this.slots.set(r.id, this.admission.take());
        await this.events.onState({ id: r.id, shardId: r.shard_id }, "adopted");
        continue;
      }
      const reason = !driver
        ? `harness from a previous run used runtime ${r.driver}, which this control plane does not have`
        : alive
          ? "harness from a previous run does not answer"
          : "harness from a previous run is gone";
      await driver
        ?.stop(record, 1000)
        .catch((err: unknown) =>
          this.log.warn({ err, harness: r.id }, "could not stop a previous run's harness"),
        );
      await this.db.query(
        "update harnesses set state = 'lost', stopped_at = now(), reason = $2 where id = $1",
        [r.id, reason],
      );
      await this.events.onLost({ id: r.id, shardId: r.shard_id }, reason);
    }
  }

  /** Stores a driver's handle on a harness (and, for display, its pid when it has one). */
  private async record(id: string, rec: HarnessRecord): Promise<void> {
    const pid = typeof rec.ref.pid === "number" ? rec.ref.pid : null;
    const pidStart = typeof rec.ref.pidStart === "string" ? rec.ref.pidStart : null;
    await this.db.query("update harnesses set ref = $2, pid = $3, pid_start = $4, url = $5 where id = $1", [
      id,
      JSON.stringify(rec.ref),
      pid,
      pidStart,
      rec.endpoint,
    ]);
  }

  async stopAll(reason: string): Promise<void> {
    this.stopping = true;
    this.admission.close();
    await Promise.allSettled([...this.starting.values()]);
    await Promise.allSettled(this.all().map((h) => this.stop(h, reason)));
  }
}
