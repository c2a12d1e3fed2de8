import { type EventBody, newId, type SessionEvent, type SessionStatus } from "@flotilla/contracts";
import { type Db, type Queryable, type Tx, withTx } from "../db/pool.ts";
import { type EventBus, rowToEvent } from "./bus.ts";

export interface SessionPatch {
  status?: SessionStatus;
  error?: { name: string; message: string } | null;
  /** The session's turn (sessions/turn.ts owns its shape; only the turn machine sets it). */
  turn?: unknown;
}

/**
 * The append-only event log. `append` gives each event the session's next sequence number inside
 * one transaction (the session row lock serialises writers, so numbers are gap-free), applies any
 * session state change in the same transaction, and publishes after commit.
 */
export class EventLog {
  constructor(
    private readonly db: Db,
    private readonly bus: EventBus,
  ) {}

  async append(sessionId: string, bodies: EventBody[], patch: SessionPatch = {}): Promise<SessionEvent[]> {
    const events = await withTx(this.db, (tx) => this.appendTx(tx, sessionId, bodies, patch));
    await this.bus.publish(events);
    return events;
  }

  /** For callers that need more work in the same transaction; they must publish after commit. */
  async appendTx(
    tx: Tx,
    sessionId: string,
    bodies: EventBody[],
    patch: SessionPatch = {},
  ): Promise<SessionEvent[]> {
    const sets = ["last_seq = last_seq + $2", "updated_at = now()"];
    const args: unknown[] = [sessionId, bodies.length];
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
    const { rows } = await tx.query(
      `update sessions set ${sets.join(", ")} where id = $1 returning last_seq`,
      args,
    );
    if (rows.length === 0) throw new Error(`session ${sessionId} vanished`);
    if (bodies.length === 0) return [];
    const last: number = rows[0].last_seq;
    const first = last - bodies.length + 1;
    const ids = bodies.map(() => newId("evt"));
    const inserted = await tx.query(
      `insert into events (session_id, seq, id, type, data)
       select $1, $2::bigint + t.i - 1, t.id, t.type, t.data
       from unnest($3::text[], $4::text[], $5::jsonb[]) with ordinality as t(id, type, data, i)
       returning *`,
      [sessionId, first, ids, bodies.map((b) => b.type), bodies.map((b) => JSON.stringify(b.data))],
    );
    await projectParts(tx, sessionId, bodies);
    return inserted.rows.map(rowToEvent).sort((a, b) => a.seq - b.seq);
  }

  async read(q: Queryable, sessionId: string, after: number, limit: number): Promise<SessionEvent[]> {
    const { rows } = await q.query(
      "select * from events where session_id = $1 and seq > $2 order by seq limit $3",
      [sessionId, after, limit],
    );
    return rows.map(rowToEvent);
  }

  publish(events: SessionEvent[]): Promise<void> {
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

/** Keeps session_parts in step with what the log says, for reconciliation. */
async function projectParts(tx: Tx, sessionId: string, bodies: EventBody[]): Promise<void> {
  for (const b of bodies) {
    switch (b.type) {
      case "text.delta":
      case "reasoning.delta":
        await tx.query(
          `insert into session_parts (session_id, part_id, kind, status, text_len) values ($1, $2, $3, 'streaming', $4)
           on conflict (session_id, part_id) do update set text_len = session_parts.text_len + $4`,
          [sessionId, b.data.partId, b.type.split(".")[0], b.data.delta.length],
        );
        break;
      case "text.completed":
      case "reasoning.completed":
        await tx.query(
          `insert into session_parts (session_id, part_id, kind, status, text_len) values ($1, $2, $3, 'completed', $4)
           on conflict (session_id, part_id) do update set status = 'completed', text_len = $4`,
          [sessionId, b.data.partId, b.type.split(".")[0], b.data.text.length],
        );
        break;
      case "tool.updated":
        await tx.query(
          `insert into session_parts (session_id, part_id, kind, status) values ($1, $2, 'tool', $3)
           on conflict (session_id, part_id) do update set status = $3`,
          [sessionId, b.data.partId, b.data.status],
        );
        break;
      case "usage":
        await tx.query(
          `insert into session_parts (session_id, part_id, kind, status) values ($1, $2, 'message', 'completed')
           on conflict (session_id, part_id) do update set status = 'completed'`,
          [sessionId, b.data.messageId],
        );
        break;
    }
  }
}
