import type { TaskState } from "./tasks.ts";
import type { WebhookEventPattern } from "./webhooks.ts";

/**
 * The contracts' run-time values that need no zod: the error class, cookie names and a few
 * constant lists. The browser imports these from `@flotilla/contracts/light` (and everything else
 * as types only), which keeps zod and the OpenAPI builder out of the UI's bundle. The full entry
 * re-exports all of it, so there is one FlotillaError class either way.
 */

/** For compile-time checks that a light list and its zod schema agree: `true` only if A and B are the same. */
export {
  asFailure,
  FAILURE_NAMES,
  FAILURES,
  type FailureName,
  type FailureShape,
  failure,
  failureOfCode,
} from "./failures.ts";

export type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

export const ERROR_CODES = [
  "invalid_request",
  "invalid_json",
  "body_too_large",
  "unauthorized",
  "forbidden",
  "not_found",
  "conflict",
  "repo_not_found",
  "repo_not_git",
  "repo_clone_failed",
  "harness_unavailable",
  "harness_error",
  "runtime_unavailable",
  // The control plane's database does not answer (restarting, failing over): try again shortly.
  "database_unavailable",
  "session_busy",
  "session_not_resumable",
  "nothing_to_commit",
  "merge_conflict",
  "worktree_dirty",
  "forge_error",
  "rate_limited",
  "internal",
  // The client's own: no answer came from the server at all (refused, reset, DNS, timeout). The
  // server never sends it; it is here so that every error a client sees has one code.
  "unreachable",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** The wire shape of an error (the zod schema `ErrorBody` in errors.ts describes the same). */
export interface ErrorBodyShape {
  error: {
    code: ErrorCode;
    message: string;
    field?: string;
    retriable: boolean;
    reference?: string;
    retryAfterSeconds?: number;
    details?: unknown;
    traceId?: string;
  };
}

const STATUS = {
  invalid_request: 400,
  invalid_json: 400,
  body_too_large: 413,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  repo_not_found: 422,
  repo_not_git: 422,
  repo_clone_failed: 422,
  harness_unavailable: 503,
  harness_error: 502,
  runtime_unavailable: 503,
  database_unavailable: 503,
  session_busy: 409,
  session_not_resumable: 409,
  nothing_to_commit: 409,
  merge_conflict: 409,
  worktree_dirty: 409,
  forge_error: 502,
  rate_limited: 429,
  internal: 500,
  unreachable: 0, // no HTTP status: nothing answered
} as const satisfies Record<ErrorCode, number>;

const RETRIABLE: Partial<Record<ErrorCode, boolean>> = {
  harness_unavailable: true,
  harness_error: true,
  database_unavailable: true,
  forge_error: true,
  rate_limited: true,
  session_busy: true,
  internal: true,
  unreachable: true,
};

/** A typed, serializable error. Thrown anywhere below the routes; rendered once by the server. */
export class FlotillaError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly field?: string;
  readonly retriable: boolean;
  readonly details?: unknown;
  /** The id a 500 was logged under: what to quote when reporting it. */
  readonly reference?: string;
  /** When to try again (rate_limited): the body's field and the Retry-After header say the same. */
  readonly retryAfterSeconds?: number;
  constructor(
    code: ErrorCode,
    message: string,
    opts: {
      field?: string;
      details?: unknown;
      cause?: unknown;
      reference?: string;
      retryAfterSeconds?: number;
    } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = "FlotillaError";
    this.code = code;
    this.status = STATUS[code];
    this.field = opts.field;
    this.retriable = RETRIABLE[code] ?? false;
    this.details = opts.details;
    this.reference = opts.reference;
    this.retryAfterSeconds = opts.retryAfterSeconds;
  }
  toBody(reference = this.reference): ErrorBodyShape {
    return {
      error: {
        code: this.code,
        message: this.message,
        retriable: this.retriable,
        ...(this.field ? { field: this.field } : {}),
        ...(reference ? { reference } : {}),
        ...(this.retryAfterSeconds !== undefined ? { retryAfterSeconds: this.retryAfterSeconds } : {}),
        ...(this.details !== undefined ? { details: this.details } : {}),
      },
    };
  }
  static fromBody(status: number, body: ErrorBodyShape, retryAfterHeader?: string | null): FlotillaError {
    const header = retryAfterHeader ? Number(retryAfterHeader) : Number.NaN;
    const e = new FlotillaError(body.error.code, body.error.message, {
      field: body.error.field,
      details: body.error.details,
      reference: body.error.reference,
      retryAfterSeconds: body.error.retryAfterSeconds ?? (Number.isFinite(header) ? header : undefined),
    });
    (e as { status: number }).status = status;
    return e;
  }
}

export const httpStatusOf = (code: ErrorCode): number => STATUS[code];

export const SESSION_COOKIE = "flotilla_session";
export const CSRF_COOKIE = "flotilla_csrf";
export const CSRF_HEADER = "x-csrf-token";

export const FINAL_TASK_STATES: TaskState[] = ["succeeded", "failed", "cancelled", "timed_out", "dead"];

export const DEFAULT_WEBHOOK_EVENTS: WebhookEventPattern[] = ["task.*", "session.status", "budget.warning"];

/** Every event type (events.ts checks at compile time that this is exactly its union's). */
export const EVENT_TYPES = [
  "session.status",
  "turn.started",
  "turn.finished",
  "text.delta",
  "text.completed",
  "reasoning.delta",
  "reasoning.completed",
  "tool.updated",
  "file.edited",
  "permission.asked",
  "permission.replied",
  "todo.updated",
  "usage",
  "provider.retry",
  "error",
  "harness.state",
  "terminal.lease",
  "git",
  "budget.warning",
] as const;

/**
 * The SSE event name a session event is sent under: its type, except `error`, which is sent as
 * `session.error`. An event named `error` reaches a browser EventSource's own failure handler
 * (`onerror`), which then reports a healthy stream as broken. The payload keeps `type: "error"`.
 */
export const sseEventName = (type: (typeof EVENT_TYPES)[number]): string =>
  type === "error" ? "session.error" : type;
