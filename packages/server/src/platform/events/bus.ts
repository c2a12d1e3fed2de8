import { EventEmitter } from "node:events";
import type { SessionEvent } from "@flotilla/contracts";
import { PgListener } from "../db/listener.ts";
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
  private listener: PgListener | undefined;
  /** Per session, the highest seq heard of from another replica (the NOTIFY path's cursor). */
  private readonly lastSeen = new Map<string, number>();
  /**
   * Per session, the highest seq handed to this process's listeners, from whichever replica: where
   * the read after a LISTEN reconnect starts, so what was committed while nobody listened reaches
   * them too.
   */
  private readonly delivered = new Map<string, number>();

  constructor(
    private readonly db: Db,
    private readonly instance: string,
    private readonly log: Logger,
  ) {
    this.emitter.setMaxListeners(0);
  }

  async start(): Promise<void> {
    // The LISTEN connection comes back by itself when the database does (a restart, a failover);
    // the NOTIFYs sent meanwhile are gone, so the log is read for what they would have said.
    this.listener = new PgListener(
      this.db,
      [CHANNEL],
      (msg) =>
        void this.onNotify(msg.payload ?? "").catch((err) =>
          this.log.warn({ err }, "reading events another replica stored failed"),
        ),
      this.log,
      () =>
        void this.catchUp().catch((err) =>
          this.log.warn({ err }, "reading the events stored while LISTEN was down failed"),
        ),
    );
    await this.listener.start();
  }

  async stop(): Promise<void> {
    await this.listener?.stop();
    this.listener = undefined;
    this.emitter.removeAllListeners();
  }

  /** Only for sessions someone listens to (`subscribe` forgets it when the last one leaves). */
  private noteDelivered(e: SessionEvent): void {
    if (this.emitter.listenerCount(e.sessionId) > 0)
      this.delivered.set(e.sessionId, Math.max(this.delivered.get(e.sessionId) ?? 0, e.seq));
  }

  private emitRead(e: SessionEvent): void {
    this.noteDelivered(e);
    this.emitter.emit(e.sessionId, e);
    this.emitter.emit("*", e);
  }

  /**
   * After a LISTEN reconnect: the events of every session someone here listens to that were stored
   * after the last one handed out (by another replica, whose NOTIFY was lost). A session nothing
   * was handed out for yet gets its newest event: a stream that lacks the ones before it reads
   * them from the log (api/sse.ts fills gaps), a watcher sees the state it waits for.
   */
  async catchUp(): Promise<void> {
    const ids = this.emitter
      .eventNames()
      .filter((n): n is string => typeof n === "string" && !n.startsWith("*"));
    if (ids.length === 0) return;
    const after = ids.map((id) => this.delivered.get(id) ?? -1);
    const { rows } = await this.db.query(
      `select e.* from unnest($1::text[], $2::bigint[]) as w(id, after)
       join sessions s on s.id = w.id
       join events e on e.session_id = w.id
         and e.seq > case when w.after < 0 then s.last_seq - 1 else w.after end
       order by e.session_id, e.seq`,
      [ids, after],
    );
    for (const r of rows) {
      const e = rowToEvent(r);
      this.lastSeen.set(e.sessionId, Math.max(this.lastSeen.get(e.sessionId) ?? 0, e.seq));
      this.emitRead(e);
    }
  }

  subscribe(sessionId: string, fn: Listener): () => void {
    this.emitter.on(sessionId, fn);
    return () => {
      this.emitter.off(sessionId, fn);
      if (this.emitter.listenerCount(sessionId) === 0) this.delivered.delete(sessionId);
    };
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
      this.noteDelivered(e);
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
    for (const r of rows) this.emitRead(rowToEvent(r));
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
