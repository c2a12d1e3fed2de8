import { backoffMs } from "../backoff.ts";
import type { Logger } from "../logger.ts";
import type { Db } from "./pool.ts";

/** Node's codes for a connection that could not be made or broke. */
const NET_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/**
 * Whether an error says the database is away (refused, cut, restarting), as opposed to a query it
 * refused. Postgres's own: class 08 (connection exception), 57P01–57P03 (shut down, crashed,
 * starting up or in recovery); pg's: a connection that ended or timed out.
 */
export function isConnectionError(err: unknown): boolean {
  if (!err || typeof err !== "object") return false;
  const e = err as { code?: unknown; message?: unknown; errors?: unknown };
  const code = typeof e.code === "string" ? e.code : "";
  if (NET_CODES.has(code) || code.startsWith("08") || /^57P0[123]$/.test(code)) return true;
  // An AggregateError (happy eyeballs: every address refused) carries the reasons inside.
  if (Array.isArray(e.errors) && e.errors.some(isConnectionError)) return true;
  const msg = typeof e.message === "string" ? e.message : "";
  return /Connection terminated|connection error and is not queryable|timeout exceeded when trying to connect|Client was closed and is not queryable|terminating connection due to|the database system is (starting up|shutting down|in recovery mode)/.test(
    msg,
  );
}

/**
 * Logs a failed loop step: a lost database connection at debug (DbHealth says once, at warn, that
 * the database went away and once that it is back; a loop that polls every second while it is away
 * would otherwise flood the log), anything else as given.
 */
export function logLoopError(log: Logger, err: unknown, msg: string, level: "warn" | "error" = "warn"): void {
  if (isConnectionError(err)) log.debug({ err }, msg);
  else log[level]({ err }, msg);
}

export interface DbHealthOptions {
  /** Between probes, doubling from the first to the last (with jitter). */
  probeBaseMs?: number;
  probeMaxMs?: number;
  /** Run before each probe while the database is away: the embedded Postgres is started again here. */
  repair?: () => Promise<void>;
}

/**
 * Whether the database answers, as this process last found it. Any part that meets a connection
 * error reports it (`report`); the state then turns unavailable and a probe (`select 1`, with
 * back-off; `repair` first) runs until one works. `/readyz` reads the state; work that must not be
 * lost waits for `up()` and tries again; listeners of `onUp` (the LISTEN connections) reconnect.
 */
export class DbHealth {
  private away: { since: Date; reason: string } | undefined;
  private waiters: (() => void)[] = [];
  private readonly upListeners = new Set<() => void>();
  private probing = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private wakeProbe: (() => void) | undefined;

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly opts: DbHealthOptions = {},
  ) {}

  get available(): boolean {
    return this.away === undefined;
  }

  /** Why the database is taken for away, and since when; undefined while it answers. */
  status(): { since: Date; reason: string } | undefined {
    return this.away;
  }

  /**
   * Reports an error met on a database connection; returns whether it was a connection error
   * (then the database is taken for away until a probe succeeds) worth waiting out: never after
   * `stop`, when work fails rather than wait for a database that may not come back.
   */
  report(err: unknown): boolean {
    if (!isConnectionError(err) || this.stopped) return false;
    if (!this.away) {
      this.away = {
        since: new Date(),
        reason: (err as Error).message || String((err as { code?: unknown }).code),
      };
      this.log.warn({ err }, "database unavailable: waiting for it to come back");
    }
    void this.probe();
    return true;
  }

  /** Resolves when the database answers (at once while it does). */
  up(): Promise<void> {
    if (!this.away || this.stopped) return Promise.resolve();
    return new Promise((r) => this.waiters.push(r));
  }

  /** Called each time the database comes back after being away. */
  onUp(fn: () => void): () => void {
    this.upListeners.add(fn);
    return () => this.upListeners.delete(fn);
  }

  /**
   * Runs `fn` until it succeeds or fails for another reason than a lost connection: on a connection
   * error, waits for the database to be back and runs it again. For work that is safe to repeat.
   */
  async retrying<T>(fn: () => Promise<T>): Promise<T> {
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        if (!this.report(err)) throw err;
        await this.up();
      }
    }
  }

  /** At shutdown: no more probes; whoever waits goes on (and meets the error again). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.wakeProbe?.();
    this.release();
  }

  private release(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }

  private async probe(): Promise<void> {
    if (this.probing) return;
    this.probing = true;
    try {
      for (let attempt = 1; !this.stopped; attempt++) {
        try {
          await this.opts.repair?.();
          await this.db.query("select 1");
          break;
        } catch (err) {
          this.log.debug({ err, attempt }, "database probe failed");
        }
        await new Promise<void>((r) => {
          this.wakeProbe = r;
          this.timer = setTimeout(
            r,
            backoffMs(attempt, this.opts.probeBaseMs ?? 100, this.opts.probeMaxMs ?? 5_000),
          );
        });
      }
    } finally {
      this.probing = false;
    }
    if (this.stopped || !this.away) return;
    const since = this.away.since;
    this.away = undefined;
    this.log.info({ awayMs: Date.now() - since.getTime() }, "database available again");
    this.release();
    for (const fn of this.upListeners) {
      try {
        fn();
      } catch (err) {
        this.log.error({ err }, "a database reconnect step failed");
      }
    }
  }
}
