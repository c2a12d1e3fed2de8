import type pg from "pg";
import { backoffMs } from "../backoff.ts";
import type { Logger } from "../logger.ts";
import type { Db } from "./pool.ts";

/**
 * A connection that LISTENs on some channels for the life of the process. When it breaks (the
 * database restarted, a failover), it is given back to the pool as broken and made again with
 * back-off until it works; `onReconnect` then runs, for whoever must read what was notified while
 * nobody listened (NOTIFY has no replay).
 */
export class PgListener {
  private client: pg.PoolClient | undefined;
  /** Takes this listener's handlers off its client (before the client goes back to the pool). */
  private detach = () => {};
  private started = false;
  private stopped = false;
  private reconnecting = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Db,
    private readonly channels: string[],
    private readonly onNotify: (msg: pg.Notification) => void,
    private readonly log: Logger,
    private readonly onReconnect?: () => void,
  ) {}

  /** The first connection: at boot, a database that does not answer fails the boot. */
  async start(): Promise<void> {
    await this.connect();
    this.started = true;
  }

  private async connect(): Promise<void> {
    const c = await this.db.connect();
    let broken = false;
    const lost = (err: unknown) => {
      if (broken) return;
      broken = true;
      if (this.client === c) this.client = undefined;
      detach();
      // Given back as broken: the pool closes it rather than hand it out again.
      c.release(err instanceof Error ? err : new Error(String(err)));
      if (this.started && !this.stopped) {
        this.log.warn({ err }, "the LISTEN connection broke; reconnecting");
        void this.reconnect();
      }
    };
    const ended = () => lost(new Error("LISTEN connection ended"));
    const notified = (m: pg.Notification) => this.onNotify(m);
    const detach = () => {
      c.off("error", lost);
      c.off("end", ended);
      c.off("notification", notified);
    };
    c.on("error", lost);
    c.on("end", ended);
    c.on("notification", notified);
    try {
      for (const ch of this.channels) await c.query(`listen ${ch}`);
    } catch (err) {
      lost(err);
      throw err;
    }
    if (this.stopped) {
      detach();
      c.release();
      return;
    }
    this.client = c;
    this.detach = detach;
  }

  private async reconnect(): Promise<void> {
    if (this.reconnecting) return;
    this.reconnecting = true;
    try {
      for (let attempt = 1; !this.stopped; attempt++) {
        await new Promise<void>((r) => {
          this.timer = setTimeout(r, backoffMs(attempt, 100, 5_000));
        });
        if (this.stopped) return;
        try {
          await this.connect();
        } catch (err) {
          this.log.debug({ err, attempt }, "LISTEN reconnect failed");
          continue;
        }
        if (!this.client) continue; // broke again at once, or stopped
        this.log.info({ attempt }, "LISTEN connection back");
        try {
          this.onReconnect?.();
        } catch (err) {
          this.log.error({ err }, "catching up after the LISTEN reconnect failed");
        }
        return;
      }
    } finally {
      this.reconnecting = false;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const c = this.client;
    this.client = undefined;
    if (c) {
      // The client is being closed either way; a broken connection listens to nothing already.
      this.detach();
      await c.query("unlisten *").catch(() => {});
      c.release();
    }
  }
}
