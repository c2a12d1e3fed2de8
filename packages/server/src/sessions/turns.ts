import type { EventBody, SessionEvent } from "@flotilla/contracts";
import { type Db, type Tx, withTx } from "../platform/db/pool.ts";
import type { EventLog, SessionPatch } from "../platform/events/log.ts";
import { step, type TurnInput, type TurnState, type TurnStep } from "./turn.ts";

export interface Applied {
  step: TurnStep;
  /** The events stored: `before`, then the step's own. */
  events: SessionEvent[];
}

/**
 * The one writer of a session's turn: each input is stepped through the turn machine with the
 * session row locked, and the new state, status and events are written in the same transaction.
 */
export class TurnOwner {
  constructor(
    private readonly db: Db,
    private readonly log: EventLog,
  ) {}

  /**
   * One transition in the caller's transaction (the caller publishes after commit). `before` are
   * events that go first in the same append (what the input is about: the error, the permission
   * request); `patch` is any other session change that belongs with it.
   */
  async applyTx(
    tx: Tx,
    sessionId: string,
    input: TurnInput,
    before: EventBody[] = [],
    patch: SessionPatch = {},
  ): Promise<Applied> {
    const { rows } = await tx.query<{ turn: TurnState | null }>(
      "select turn from sessions where id = $1 for update",
      [sessionId],
    );
    if (!rows[0]) throw new Error(`session ${sessionId} vanished`);
    const from = rows[0].turn;
    const s = step(from, input, Date.now());
    if (s.effects.some((e) => e.type === "permissions-gone"))
      await tx.query(
        "update permission_requests set status = 'gone' where session_id = $1 and status = 'pending'",
        [sessionId],
      );
    const bodies = [...before, ...s.events];
    const change: SessionPatch = {
      ...patch,
      ...(s.status ? { status: s.status } : {}),
      ...(s.error !== undefined ? { error: s.error } : {}),
      ...(s.state !== from ? { turn: s.state } : {}),
    };
    // Nothing happened (a late or repeated input): the row is left as it was.
    if (bodies.length === 0 && Object.keys(change).length === 0) return { step: s, events: [] };
    return { step: s, events: await this.log.appendTx(tx, sessionId, bodies, change) };
  }

  /** One transition in its own transaction, published after commit. */
  apply(
    sessionId: string,
    input: TurnInput,
    before: EventBody[] = [],
    patch: SessionPatch = {},
  ): Promise<Applied> {
    return this.transact(sessionId, async (tx) => {
      const applied = await this.applyTx(tx, sessionId, input, before, patch);
      return { result: applied, events: applied.events };
    });
  }

  /**
   * A transaction that writes the session's log (through `applyTx`), in the log's queue for that
   * session: after the events appended before it, before those appended after. Its events are
   * published after commit.
   */
  transact<T>(sessionId: string, fn: (tx: Tx) => Promise<{ result: T; events: SessionEvent[] }>): Promise<T> {
    return this.log.alone(sessionId, async () => {
      const { result, events } = await withTx(this.db, fn);
      await this.log.publish(events);
      return result;
    });
  }
}
