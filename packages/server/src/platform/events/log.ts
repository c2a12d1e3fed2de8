import { type EventBody, newId, type SessionEvent, type SessionStatus } from "@flotilla/contracts";
import type { DbHealth } from "../db/health.ts";
import type { Db, Queryable, Tx } from "../db/pool.ts";
import { knowsSecrets, redactSecrets } from "../redact.ts";
import type { Timings } from "../timings.ts";
import { type EventBus, rowToEvent } from "./bus.ts";

export interface SessionPatch {
  status?: SessionStatus;
  error?: { name: string; message: string } | null;
  /** The session's turn (sessions/turn.ts owns its shape; only the turn machine sets it). */
  turn?: unknown;
}

/** One caller's append, waiting in its session's queue. */
interface Pending {
  bodies: EventBody[];
  patch: SessionPatch;
  resolve: (events: SessionEvent[]) => void;
  reject: (err: unknown) => void;
  /** `performance.now()` when the ingest received the harness event these bodies come from. */
  receivedAt?: number;
}

/** Work on one session's log, in the order it was asked for: appends, or a job run alone. */
type Job = { kind: "append"; p: Pending } | { kind: "alone"; run: () => Promise<void> };

/**
 * When this process committed an event (`performance.now()`): set on the events it stored and
 * published, the very objects its bus hands to in-process listeners. Events read back from the
 * log or heard of from another replica have none (their delivery lag is not this clock's to tell).
 */
const committed = new WeakMap<SessionEvent, number>();

export function committedAt(e: SessionEvent): number | undefined {
  return committed.get(e);
}

function stamp(events: SessionEvent[]): number {
  const now = performance.now();
  for (const e of events) committed.set(e, now);
  return now;
}

/** Events one statement writes at most: a long backlog is written in a few statements, not one. */
const MAX_BATCH = 500;

/**
 * Event bodies the queues may hold, all sessions together, while the database is away: beyond
 * that an append is refused at once (memory stays bounded through a long outage). The ingest's
 * read-back at the turn's end (sessions/ingest.ts) then stores what the harness still has.
 */
export const MAX_WAITING_BODIES = 100_000;

/**
 * The append-only event log. Each append is one statement (its own transaction, or the caller's):
 * the session row's `last_seq` gives the events their gap-free sequence numbers (the row lock
 * serialises writers across processes), the events and the session state change go in with it,
 * and the events are published after commit.
 *
 * Within this process every session has one writer, a queue: appends that arrive while one is
 * being written go together in the next statement (group commit: the first waits for nothing,
 * a burst of deltas costs one round trip), and `alone` runs work that writes the session's log in
 * its own transaction (a turn transition) after everything queued before it and before anything
 * queued after. So the order of the log is the order of the calls.
 */
export class EventLog {
  private readonly queues = new Map<string, Job[]>();
  /** Bodies of the appends waiting in the queues. */
  private waiting = 0;

  /**
   * `health`: with it, an append that meets a lost connection is not failed but written again once
   * the database is back (after checking whether the lost statement committed after all), in its
   * place in the session's queue: harness events that arrive while the database is away are stored
   * late, in order, and published only once stored. Without it (tests, tools), it fails.
   */
  constructor(
    readonly db: Db,
    private readonly bus: EventBus,
    private readonly timings?: Timings,
    private readonly health?: DbHealth,
  ) {}

  /**
   * `receivedAt` (`performance.now()`): when the harness event these bodies translate was
   * received, for the store lag (`Timings.eventStored`, one observation per append).
   */
  append(
    sessionId: string,
    bodies: EventBody[],
    patch: SessionPatch = {},
    receivedAt?: number,
  ): Promise<SessionEvent[]> {
    if (this.health && !this.health.available && this.waiting + bodies.length > MAX_WAITING_BODIES)
      return Promise.reject(
        new Error(`the database is away and ${this.waiting} events already wait for it: not stored`),
      );
    this.waiting += bodies.length;
    return new Promise((resolve, reject) =>
      this.enqueue(sessionId, { kind: "append", p: { bodies, patch, resolve, reject, receivedAt } }),
    );
  }

  /** Runs `fn` in the session's queue: after every append and job asked for before, alone. */
  alone<T>(sessionId: string, fn: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) =>
      this.enqueue(sessionId, { kind: "alone", run: () => fn().then(resolve, reject) }),
    );
  }

  /** Resolves when everything queued for the session so far is written (failed appends included). */
  flushed(sessionId: string): Promise<void> {
    return this.queues.has(sessionId) ? this.alone(sessionId, async () => {}) : Promise.resolve();
  }

  /** Resolves when every session's queue is empty (at shutdown, before the database goes). */
  async idle(): Promise<void> {
    while (this.queues.size > 0) await Promise.all([...this.queues.keys()].map((id) => this.flushed(id)));
  }

  private enqueue(sessionId: string, job: Job): void {
    const q = this.queues.get(sessionId);
    if (q) {
      q.push(job);
      return;
    }
    const fresh = [job];
    this.queues.set(sessionId, fresh);
    void this.drain(sessionId, fresh);
  }

  private async drain(sessionId: string, q: Job[]): Promise<void> {
    while (q.length > 0) {
      const head = q[0]!;
      if (head.kind === "alone") {
        q.shift();
        // Its own promise carries its outcome; the queue goes on either way.
        await head.run().catch(() => {});
        continue;
      }
      const batch: Pending[] = [];
      let n = 0;
      while (q[0]?.kind === "append" && (batch.length === 0 || n + q[0].p.bodies.length <= MAX_BATCH)) {
        const p = (q.shift() as Extract<Job, { kind: "append" }>).p;
        batch.push(p);
        n += p.bodies.length;
      }
      try {
        const patch: SessionPatch = Object.assign({}, ...batch.map((p) => p.patch));
        const events = await this.writeSurely(
          sessionId,
          batch.flatMap((p) => p.bodies),
          patch,
        ).finally(() => {
          this.waiting -= n;
        });
        const stored = stamp(events);
        if (this.timings)
          for (const p of batch)
            if (p.receivedAt !== undefined) this.timings.eventStored((stored - p.receivedAt) / 1000);
        await this.bus.publish(events);
        let at = 0;
        for (const p of batch) {
          p.resolve(events.slice(at, at + p.bodies.length));
          at += p.bodies.length;
        }
      } catch (err) {
        for (const p of batch) p.reject(err);
      }
    }
    this.queues.delete(sessionId);
  }

  /**
   * One statement, written again after a lost connection once the database is back (with `health`).
   * The lost one may have committed before the connection broke: its event ids (chosen here, once)
   * are looked for first, so a batch is never stored twice.
   */
  private async writeSurely(
    sessionId: string,
    bodies: EventBody[],
    patch: SessionPatch,
  ): Promise<SessionEvent[]> {
    const ids = bodies.map(() => newId("evt"));
    let maybeStored = false;
    for (;;) {
      try {
        if (maybeStored) {
          const { rows } = await this.db.query(
            "select * from events where session_id = $1 and id = any($2::text[]) order by seq",
            [sessionId, ids],
          );
          if (rows.length > 0) return rows.map(rowToEvent);
        }
        return await this.write(this.db, sessionId, bodies, patch, ids);
      } catch (err) {
        if (!this.health?.report(err)) throw err;
        maybeStored = true;
        await this.health.up();
      }
    }
  }

  /** For callers that need more work in the same transaction; they must publish after commit,
   * and run inside `alone` for the session so their events keep their place. */
  appendTx(
    tx: Tx,
    sessionId: string,
    bodies: EventBody[],
    patch: SessionPatch = {},
  ): Promise<SessionEvent[]> {
    return this.write(tx, sessionId, bodies, patch);
  }

  /**
   * One statement: the session row (sequence numbers, state change, usage totals), the events,
   * and session_parts. The events are built from the bodies given, not read back: what is
   * published is what was stored, without a JSON round trip per event.
   */
  private async write(
    q: Queryable,
    sessionId: string,
    bodies: EventBody[],
    patch: SessionPatch,
    ids: string[] = bodies.map(() => newId("evt")),
  ): Promise<SessionEvent[]> {
    // Known secret values never reach the log (platform/redact.ts); redacted before anything is
    // derived from the bodies, so part lengths agree with the text stored.
    const data = bodies.map((b) => JSON.stringify(b.data));
    if (knowsSecrets())
      bodies = bodies.map((b, i) => {
        const clean = redactSecrets(data[i]!);
        if (clean === data[i]) return b;
        data[i] = clean;
        return { ...b, data: JSON.parse(clean) } as EventBody;
      });
    const sets = ["last_seq = last_seq + $2", "updated_at = now()"];
    const parts = partOps(bodies);
    const args: unknown[] = [
      sessionId,
      bodies.length,
      ids,
      bodies.map((b) => b.type),
      data,
      parts.map((x) => x.partId),
      parts.map((x) => x.kind),
      parts.map((x) => x.status),
      parts.map((x) => x.len),
      parts.map((x) => x.mode),
    ];
    if (patch.status) sets.push(`status = $${args.push(patch.status)}`);
    if (patch.error !== undefined)
      sets.push(`error = $${args.push(patch.error ? JSON.stringify(patch.error) : null)}`);
    if (patch.turn !== undefined)
      sets.push(`turn = $${args.push(patch.turn === null ? null : JSON.stringify(patch.turn))}::jsonb`);
    const usage = bodies.flatMap((b) => (b.type === "usage" ? [b.data] : []));
    if (usage.length > 0) {
      const sum = (f: (u: (typeof usage)[number]) => number) =>
        usage.reduce((a, u) => a + (Number(f(u)) || 0), 0);
      const add = (k: "input" | "output" | "reasoning" | "cacheRead" | "cacheWrite") =>
        `'${k}', (tokens->>'${k}')::float + $${args.push(sum((u) => u.tokens[k]))}::float`;
      sets.push(
        `tokens = jsonb_build_object(${add("input")}, ${add("output")}, ${add("reasoning")}, ${add("cacheRead")}, ${add("cacheWrite")})`,
        `cost = cost + $${args.push(sum((u) => u.cost))}::float`,
      );
    }
    // Data-modifying WITH clauses always run to completion; the inserts join `s`, so nothing is
    // written for a session that is gone. A named (prepared) statement: planning this one costs
    // more than running it, and its text depends only on which session columns change.
    const { rows } = await q.query({
      name: `flotilla_append_${sets.map((x) => x.split(" ")[0]).join("_")}`,
      text: `with s as (
         update sessions set ${sets.join(", ")} where id = $1 returning last_seq
       ), ev as (
         insert into events (session_id, seq, id, type, data)
         select $1, s.last_seq - $2 + t.i, t.id, t.type, t.data
         from s, unnest($3::text[], $4::text[], $5::jsonb[]) with ordinality as t(id, type, data, i)
       ), ops as (
         select p.* from s, unnest($6::text[], $7::text[], $8::text[], $9::int[], $10::text[])
           as p(part_id, kind, status, len, mode)
       ), added as (
         insert into session_parts (session_id, part_id, kind, status, text_len)
         select $1, part_id, kind, status, len from ops where mode = 'add'
         on conflict (session_id, part_id) do update set text_len = session_parts.text_len + excluded.text_len
       ), set_ as (
         insert into session_parts (session_id, part_id, kind, status, text_len)
         select $1, part_id, kind, status, len from ops where mode = 'set'
         on conflict (session_id, part_id) do update set text_len = excluded.text_len, status = excluded.status
       ), marked as (
         insert into session_parts (session_id, part_id, kind, status)
         select $1, part_id, kind, status from ops where mode = 'status'
         on conflict (session_id, part_id) do update set status = excluded.status
       )
       select last_seq, now() as at from s`,
      values: args,
    });
    if (rows.length === 0) throw new Error(`session ${sessionId} vanished`);
    const last = Number(rows[0].last_seq);
    const at = (rows[0].at as Date).toISOString();
    return bodies.map(
      (b, i) =>
        ({
          id: ids[i]!,
          sessionId,
          seq: last - bodies.length + 1 + i,
          v: 1,
          at,
          type: b.type,
          data: b.data,
        }) as SessionEvent,
    );
  }

  async read(q: Queryable, sessionId: string, after: number, limit: number): Promise<SessionEvent[]> {
    const { rows } = await q.query(
      "select * from events where session_id = $1 and seq > $2 order by seq limit $3",
      [sessionId, after, limit],
    );
    return rows.map(rowToEvent);
  }

  /** For `appendTx`'s callers, after their commit. */
  publish(events: SessionEvent[]): Promise<void> {
    stamp(events);
    return this.bus.publish(events);
  }

  /**
   * Waits for the first event of a session that `match` accepts, for at most `ms`: `done` gives it,
   * or undefined at the deadline. Listening starts at the call, so check the state you wait on
   * after calling this (and `cancel` if it already holds): nothing committed in between is missed.
   */
  watch(
    sessionId: string,
    match: (e: SessionEvent) => boolean,
    ms: number,
  ): { done: Promise<SessionEvent | undefined>; cancel: () => void } {
    let cancel = () => {};
    const done = new Promise<SessionEvent | undefined>((resolve) => {
      const timer = setTimeout(() => end(undefined), ms);
      const off = this.bus.subscribe(sessionId, (e) => {
        if (match(e)) end(e);
      });
      const end = (e: SessionEvent | undefined) => {
        clearTimeout(timer);
        off();
        resolve(e);
      };
      cancel = () => end(undefined);
    });
    return { done, cancel };
  }
}

/** What one append does to a harness part's row in session_parts. */
interface PartOp {
  partId: string;
  kind: string;
  status: string;
  len: number;
  /** add: text_len grows by len (status only on insert); set: text_len and status replaced;
   * status: only the status replaced. */
  mode: "add" | "set" | "status";
}

/**
 * session_parts, kept in step with what the log says (a reconcile reads it to know what the log
 * already holds): the bodies' effects folded into one operation per part, in order, since one
 * statement may change a row only once.
 */
function partOps(bodies: EventBody[]): PartOp[] {
  const ops = new Map<string, PartOp>();
  const touch = (partId: string, f: (op: PartOp | undefined) => PartOp) =>
    ops.set(partId, f(ops.get(partId)));
  for (const b of bodies) {
    switch (b.type) {
      case "text.delta":
      case "reasoning.delta": {
        const len = b.data.delta.length;
        touch(b.data.partId, (op) =>
          op && op.mode !== "status"
            ? { ...op, len: op.len + len }
            : { partId: b.data.partId, kind: b.type.split(".")[0]!, status: "streaming", len, mode: "add" },
        );
        break;
      }
      case "text.completed":
      case "reasoning.completed":
        touch(b.data.partId, () => ({
          partId: b.data.partId,
          kind: b.type.split(".")[0]!,
          status: "completed",
          len: b.data.text.length,
          mode: "set",
        }));
        break;
      case "tool.updated":
        touch(b.data.partId, () => ({
          partId: b.data.partId,
          kind: "tool",
          status: b.data.status,
          len: 0,
          mode: "status",
        }));
        break;
      case "usage":
        touch(b.data.messageId, () => ({
          partId: b.data.messageId,
          kind: "message",
          status: "completed",
          len: 0,
          mode: "status",
        }));
        break;
    }
  }
  return [...ops.values()];
}
