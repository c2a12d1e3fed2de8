import type { EventBody, SessionEvent } from "@flotilla/contracts";
import { context, trace } from "@opentelemetry/api";
import { type Db, type Tx, withTx } from "../platform/db/pool.ts";
import type { EventLog, SessionPatch } from "../platform/events/log.ts";
import { type Context, type Span, SpanStatusCode, traceparentOf, tracer } from "../platform/tracing.ts";
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
  /**
   * The `session.turn` span of each turn running here: started with the turn (a child of whatever
   * started it: a task's run, an API request), ended by the input that finishes it. A turn that ends
   * on another replica, or after a restart, leaves its span unended (not exported): a trace has gaps
   * where the process that held a span died.
   */
  private readonly spans = new Map<string, Span>();

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
    await this.traceTurn(tx, sessionId, s);
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
    // The caller's trace, not that of whoever drains the session's queue: a turn started here is its child.
    const caller = context.active();
    return this.transact(sessionId, (tx) =>
      context.with(caller, async () => {
        const applied = await this.applyTx(tx, sessionId, input, before, patch);
        return { result: applied, events: applied.events };
      }),
    );
  }

  /** The context of the session's running turn's span, if it runs here (for its prompt's span). */
  spanContext(sessionId: string): Context | undefined {
    const span = this.spans.get(sessionId);
    return span ? trace.setSpan(context.active(), span) : undefined;
  }

  /**
   * A turn that starts opens its span, and its traceparent is stored on the session (where the model
   * gateway looks for the trace of the calls it serves); the step that finishes it ends the span.
   */
  private async traceTurn(tx: Tx, sessionId: string, s: TurnStep): Promise<void> {
    for (const e of s.events) {
      if (e.type === "turn.started") {
        this.spans.get(sessionId)?.end();
        const span = tracer().startSpan("session.turn", {
          attributes: {
            "flotilla.session.id": sessionId,
            "flotilla.model": e.data.model ?? "",
            "flotilla.turn.message_id": e.data.messageId,
          },
        });
        if (!span.isRecording()) continue;
        this.spans.set(sessionId, span);
        const traceparent = traceparentOf(trace.setSpan(context.active(), span));
        if (traceparent)
          await tx.query("update sessions set traceparent = $2 where id = $1", [sessionId, traceparent]);
      } else if (e.type === "turn.finished") {
        const span = this.spans.get(sessionId);
        if (!span) continue;
        this.spans.delete(sessionId);
        span.setAttribute("flotilla.turn.outcome", e.data.outcome);
        if (e.data.error) span.setStatus({ code: SpanStatusCode.ERROR, message: e.data.error.message });
        span.end();
      }
    }
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
