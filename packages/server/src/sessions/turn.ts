import {
  type ErrorInfo,
  type EventBody,
  failure,
  type SessionStatus,
  type TurnOutcome,
} from "@flotilla/contracts";

/**
 * A session's turn, as one state machine: the only code that decides when a turn starts, what it
 * is waiting for, and how it ends. `step` is pure (state and input in, state and events out); the
 * `TurnOwner` (./turns.ts) runs each step inside the event log's append transaction, with the
 * session row locked, so the state in the `sessions.turn` column, the status and the events that
 * tell of the change are written together or not at all.
 *
 * A turn ends with exactly one `turn.finished` event, which carries the outcome and the status it
 * leaves the session in: every client (CLI, scheduler, UI) ends a turn on that event alone.
 */

/** The state a session's turn is in; `null` when there is no turn (the session is idle or done). */
export type TurnState =
  /** A prompt waiting for its harness (the session is being provisioned); an abort drops it. */
  | { phase: "pending"; prompt: string; model?: string; agent?: string }
  /** The prompt was handed to the harness: the turn runs until the harness says it is done. */
  | {
      phase: "running";
      /** The id we gave the prompt's message: read-back tells this turn's answer by it. */
      messageId: string;
      startedAt: number;
      abortRequested: boolean;
      /** The harness's error for this turn as streamed (the read-back may not carry it yet). */
      error?: ErrorInfo;
      /** Permission requests the agent is blocked on. */
      waiting: string[];
    };

export type TurnInput =
  /** A prompt for a session whose harness is not ready yet. */
  | { type: "queue"; prompt: string; model?: string; agent?: string }
  /** The prompt is handed to the harness now: the one given, or the pending one. */
  | { type: "start"; messageId: string; prompt?: string; model: string; agent?: string }
  | { type: "permission.asked"; requestId: string }
  | { type: "permission.replied"; requestId: string }
  /** The harness reported an error for this session. */
  | { type: "error"; error: ErrorInfo }
  /** A person asked to stop the turn. */
  | { type: "abort" }
  /** The harness asked to abort never ended the turn: it ends as aborted anyway. */
  | { type: "abort.unanswered" }
  /** The harness is idle; `answered` says whether this turn's prompt has an answer (read back). */
  | { type: "idle"; answered: boolean; error?: ErrorInfo }
  /** The harness refused the prompt. */
  | { type: "refused"; error: ErrorInfo }
  /** The turn cannot go on: its harness was lost, or the control plane stopped or restarted. */
  | { type: "lost"; error: ErrorInfo; reason: string };

/** Work for the owner outside the transaction (after commit). */
export type TurnEffect =
  /** Tell the harness to abort the running turn. */
  | { type: "abort-harness" }
  /** Permission requests still pending are moot: the turn that asked them is over. */
  | { type: "permissions-gone" };

export interface TurnStep {
  state: TurnState | null;
  events: EventBody[];
  /** The session's status and error as the step leaves them; absent when unchanged. */
  status?: SessionStatus;
  error?: ErrorInfo | null;
  effects: TurnEffect[];
}

const ABORTED = "MessageAbortedError";

/** One transition. `at` is the time of the input (ms since the epoch), for the turn's duration. */
export function step(state: TurnState | null, input: TurnInput, at: number): TurnStep {
  const same = (): TurnStep => ({ state, events: [], effects: [] });
  switch (input.type) {
    case "queue":
      if (state?.phase === "running") return same();
      return {
        state: {
          phase: "pending",
          prompt: input.prompt,
          ...(input.model ? { model: input.model } : {}),
          ...(input.agent ? { agent: input.agent } : {}),
        },
        events: [],
        effects: [],
      };
    case "start": {
      if (state?.phase === "running") return same();
      const prompt = input.prompt ?? (state?.phase === "pending" ? state.prompt : undefined);
      // No prompt: it was dropped by an abort before it could start.
      if (prompt === undefined) return same();
      const model = input.prompt === undefined && state?.model ? state.model : input.model;
      const agent = input.prompt === undefined && state?.agent ? state.agent : input.agent;
      return {
        state: {
          phase: "running",
          messageId: input.messageId,
          startedAt: at,
          abortRequested: false,
          waiting: [],
        },
        events: [
          {
            type: "turn.started",
            data: { prompt, model, ...(agent ? { agent } : {}), messageId: input.messageId },
          },
          { type: "session.status", data: { status: "running" } },
        ],
        status: "running",
        error: null,
        effects: [],
      };
    }
    case "permission.asked": {
      if (state?.phase !== "running" || state.waiting.includes(input.requestId)) return same();
      const first = state.waiting.length === 0;
      return {
        state: { ...state, waiting: [...state.waiting, input.requestId] },
        events: first ? [{ type: "session.status", data: { status: "waiting_permission" } }] : [],
        ...(first ? { status: "waiting_permission" as const } : {}),
        effects: [],
      };
    }
    case "permission.replied": {
      if (state?.phase !== "running" || !state.waiting.includes(input.requestId)) return same();
      const waiting = state.waiting.filter((x) => x !== input.requestId);
      const last = waiting.length === 0;
      return {
        state: { ...state, waiting },
        events: last ? [{ type: "session.status", data: { status: "running" } }] : [],
        ...(last ? { status: "running" as const } : {}),
        effects: [],
      };
    }
    case "error":
      if (state?.phase !== "running") return same();
      // An abort nobody asked for is OpenCode cancelling its own work (a superseded prompt): not this turn's outcome.
      if (input.error.name === ABORTED && !state.abortRequested) return same();
      return { state: { ...state, error: input.error }, events: [], effects: [] };
    case "abort":
      if (state === null) return same();
      // Not started: the prompt is dropped, and provisioning ends idle.
      if (state.phase === "pending") return { state: null, events: [], effects: [] };
      return {
        state: state.abortRequested ? state : { ...state, abortRequested: true },
        events: [],
        effects: [{ type: "abort-harness" }],
      };
    case "abort.unanswered":
      if (state?.phase !== "running") return same();
      return finish(state, at, "aborted", failure(ABORTED, "aborted by request"));
    case "idle": {
      // Idle before the prompt was taken up (or a late idle of an earlier turn): not this turn's end.
      if (state?.phase !== "running" || !input.answered) return same();
      // The message may not carry its error yet when idle is reported; session.error came before idle.
      let error = input.error ?? state.error;
      // An abort nobody asked for is not how the turn ended: the error streamed before it is, if any.
      if (error?.name === ABORTED && !state.abortRequested) error = state.error;
      // We asked for the abort and the turn ended: that is how it ended, whatever else is late.
      if (!error && state.abortRequested) error = failure(ABORTED, "aborted by request");
      return finish(state, at, !error ? "success" : error.name === ABORTED ? "aborted" : "error", error);
    }
    case "refused":
      if (state?.phase !== "running") return same();
      return finish(state, at, "error", input.error);
    case "lost":
      if (state?.phase !== "running") return same();
      return finish(state, at, "interrupted", input.error, input.reason);
  }
}

function finish(
  state: Extract<TurnState, { phase: "running" }>,
  at: number,
  outcome: TurnOutcome,
  error: ErrorInfo | undefined,
  reason?: string,
): TurnStep {
  const status: SessionStatus = outcome === "interrupted" ? "interrupted" : "idle";
  return {
    state: null,
    events: [
      {
        type: "turn.finished",
        data: {
          outcome,
          ...(error ? { error } : {}),
          durationMs: Math.max(0, at - state.startedAt),
          status,
        },
      },
      {
        type: "session.status",
        data: {
          status,
          ...(reason ? { reason } : {}),
          ...(error && outcome !== "success" ? { error } : {}),
        },
      },
    ],
    status,
    error: outcome === "error" || outcome === "interrupted" ? (error ?? null) : null,
    effects: [{ type: "permissions-gone" }],
  };
}

/** Whether a turn is running (the harness has its prompt). */
export const running = (s: TurnState | null): s is Extract<TurnState, { phase: "running" }> =>
  s?.phase === "running";
