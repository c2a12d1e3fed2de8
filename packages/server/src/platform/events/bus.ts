import { EventEmitter } from "node:events";
import type { SessionEvent } from "@flotilla/contracts";
import type pg from "pg";
import type { Db } from "../db/pool.ts";
import type { Logger } from "../logger.ts";

export type Listener = (e: SessionEvent) => void;
/** A task changed state: what the activity feed tells UIs, on whichever replica made the change. */
export interface TaskNotice {
  id: string;
  state: string;
}
const CHANNEL = "flotilla_events";

/**
 * Fan-out of committed events. In-process listeners get events directly; other replicas hear of
 * them through Postgres NOTIFY (payload: instance, session, highest seq) and read them from the
 * log. Delivery order per session may differ from seq order: readers re-order and fill gaps.
 */
export class EventBus {
  private readonly emitter = new EventEmitter();
  private listenClient: pg.PoolClient | undefined;
  private readonly lastSeen = new Map<string, number>();

  constructor(
    private readonly db: Db,
    private readonly instance: string,
    private readonly log: Logger,
  ) {
    this.emitter.setMaxListeners(0);
  }

  async start(): Promise<void> {
    this.listenClient = await this.db.connect();
    this.listenClient.on("notification", (msg) => void this.onNotify(msg.payload ?? ""));
    await this.listenClient.query(`listen ${CHANNEL}`);
  }

  async stop(): Promise<void> {
    const c = this.listenClient;
    this.listenClient = undefined;
    if (c) {
      // The client is being closed either way; a broken connection listens to nothing already.
      await c.query(`unlisten ${CHANNEL}`).catch(() => {});
      c.release();
    }
    this.emitter.removeAllListeners();
  }

  subscribe(sessionId: string, fn: Listener): () => void {
    this.emitter.on(sessionId, fn);
    return () => this.emitter.off(sessionId, fn);
  }

  subscribeAll(fn: Listener): () => void {
    this.emitter.on("*", fn);
    return () => this.emitter.off("*", fn);
  }

  /** Only the events this replica stored: for work that must happen once per event (webhooks). */
  subscribeLocal(fn: Listener): () => void {
    this.emitter.on("*local", fn);
    return () => this.emitter.off("*local", fn);
  }

  /** Task state changes from every replica (sessions have their own events; tasks only transitions). */
  subscribeTasks(fn: (n: TaskNotice) => void): () => void {
    this.emitter.on("*task", fn);
    return () => this.emitter.off("*task", fn);
  }

  /** Called after a task transition commits. */
  publishTask(n: TaskNotice): void {
    this.emitter.emit("*task", n);
    this.db
      .query("select pg_notify($1, $2)", [CHANNEL, `${this.instance}|task|${n.id}|${n.state}`])
      .catch((err) => this.log.warn({ err }, "notify failed"));
  }

  /** Called after commit with the events just stored. */
  async publish(events: SessionEvent[]): Promise<void> {
    if (events.length === 0) return;
    for (const e of events) {
      this.emitter.emit(e.sessionId, e);
      this.emitter.emit("*", e);
      this.emitter.emit("*local", e);
    }
    const last = events[events.length - 1]!;
    // Not awaited: other replicas re-read the log from the seq, so notify order and latency
    // do not matter, and the ingest path should not wait a round trip per event.
    this.db
      .query("select pg_notify($1, $2)", [CHANNEL, `${this.instance}|${last.sessionId}|${last.seq}`])
      .catch((err) => this.log.warn({ err }, "notify failed"));
  }

  private async onNotify(payload: string): Promise<void> {
    const parts = payload.split("|");
    if (parts[0] === this.instance) return;
    if (parts[1] === "task") {
      if (parts[2] && parts[3]) this.emitter.emit("*task", { id: parts[2], state: parts[3] });
      return;
    }
    const [, sessionId, seqText] = parts;
    if (!sessionId) return;
    if (this.emitter.listenerCount(sessionId) === 0 && this.emitter.listenerCount("*") === 0) return;
    const seq = Number(seqText);
    const after = this.lastSeen.get(sessionId) ?? seq - 1;
    if (seq <= after) return;
    this.lastSeen.set(sessionId, seq);
    const { rows } = await this.db.query(
      "select * from events where session_id = $1 and seq > $2 and seq <= $3 order by seq",
      [sessionId, after, seq],
    );
    for (const r of rows) {
      const e = rowToEvent(r);
      this.emitter.emit(sessionId, e);
      this.emitter.emit("*", e);
    }
  }
}

export function rowToEvent(r: {
  id: string;
  session_id: string;
  seq: number;
  type: string;
  data: unknown;
  at: Date;
}): SessionEvent {
  return {
    id: r.id,
    sessionId: r.session_id,
    seq: r.seq,
    v: 1,
    at: r.at.toISOString(),
    type: r.type,
    data: r.data,
  } as SessionEvent;
}
