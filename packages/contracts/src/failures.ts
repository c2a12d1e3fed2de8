import type { ErrorCode } from "./light.ts";

/**
 * How a turn, a session's start or a task's attempt can fail: a closed list. A failure is named
 * where it is born (the agent's stream, the runtime driver, the scheduler) and says there whether
 * another attempt can help; nothing downstream reads its message to decide. Zod-free, like
 * light.ts, so the browser has the list too; events.ts builds the schema from it.
 *
 * `retriable` here is each kind's default; the place a failure is born may know better (OpenCode
 * says of each provider error whether it is worth another try).
 */
export const FAILURES = {
  // The agent and its model provider. OpenCode's own names, kept: they are what its users know.
  ProviderAuthError: { retriable: false, about: "the model provider refused the credentials" },
  APIError: { retriable: false, about: "the model provider answered with an error" },
  ContextOverflowError: { retriable: false, about: "the conversation no longer fits the model's context" },
  MessageOutputLengthError: { retriable: false, about: "the model's answer reached its output limit" },
  ContentFilterError: { retriable: false, about: "the model provider's content filter stopped the answer" },
  StructuredOutputError: {
    retriable: false,
    about: "the model did not produce the structured output asked for",
  },
  MessageAbortedError: { retriable: false, about: "the turn was aborted" },
  // The model gateway, before a call reaches the provider.
  BudgetExceeded: { retriable: false, about: "a budget was reached: the model gateway refused the call" },
  AgentError: {
    retriable: false,
    about: "the agent failed without a kind; its message says what it reported",
  },
  // The harness and the runtime that runs it.
  HarnessLost: { retriable: true, about: "the harness or the connection to it was lost mid-turn" },
  HarnessUnavailable: { retriable: true, about: "no harness could be started or reached" },
  HarnessError: { retriable: true, about: "the harness refused a request" },
  RepositoryUnavailable: { retriable: false, about: "the repository could not be found, read or cloned" },
  // The control plane.
  ControlPlaneRestart: { retriable: true, about: "the control plane restarted while the work was in flight" },
  ControlPlaneShutdown: {
    retriable: true,
    about: "the control plane shut down while the work was in flight",
  },
  LeaseExpired: { retriable: true, about: "the replica running the work stopped renewing its lease" },
  Refused: { retriable: false, about: "the control plane refused a step of the work (the message says why)" },
  InternalError: {
    retriable: false,
    about: "Flotilla itself failed: a bug (the server log has the details)",
  },
  // A task's attempt.
  Timeout: { retriable: false, about: "the task ran out of time" },
  VerifyFailed: { retriable: false, about: "the task's verify command failed" },
  LandFailed: { retriable: false, about: "the work was done but could not be committed or proposed" },
  TurnFailed: { retriable: false, about: "the turn ended in error without saying why" },
} as const satisfies Record<string, { retriable: boolean; about: string }>;

export type FailureName = keyof typeof FAILURES;
export const FAILURE_NAMES = Object.keys(FAILURES) as [FailureName, ...FailureName[]];

/** The wire shape of a failure (events.ts's `ErrorInfo` schema describes the same). */
export interface FailureShape {
  name: FailureName;
  /** For people: one line, no stack trace. */
  message: string;
  /** Whether another attempt may succeed: decided where the failure was born. */
  retriable: boolean;
  /** When a retry makes sense no sooner than this (a provider's rate limit). */
  retryAfterMs?: number;
  /** More for an operator (a status code, the agent's own error name); never a secret or a stack. */
  detail?: string;
}

export function failure(
  name: FailureName,
  message: string,
  opts: { retriable?: boolean; retryAfterMs?: number; detail?: string } = {},
): FailureShape {
  return {
    name,
    message,
    retriable: opts.retriable ?? FAILURES[name].retriable,
    ...(opts.retryAfterMs !== undefined ? { retryAfterMs: opts.retryAfterMs } : {}),
    ...(opts.detail ? { detail: opts.detail } : {}),
  };
}

/** The failure a refused API call stands for, when work (not a person) met it. */
export function failureOfCode(code: ErrorCode, message: string, retriable: boolean): FailureShape {
  switch (code) {
    case "harness_unavailable":
    case "runtime_unavailable":
      return failure("HarnessUnavailable", message);
    case "harness_error":
      return failure("HarnessError", message);
    case "repo_not_found":
    case "repo_not_git":
    case "repo_clone_failed":
      return failure("RepositoryUnavailable", message);
    case "internal":
      return failure("InternalError", message);
    default:
      return failure("Refused", message, { retriable, detail: code });
  }
}

const isName = (n: unknown): n is FailureName => typeof n === "string" && Object.hasOwn(FAILURES, n);

/**
 * Reads a failure stored before the list was closed (or by anything that did not go through
 * `failure`): a known name keeps its kind, anything else is an AgentError that names what it was.
 */
export function asFailure(x: unknown): FailureShape | null {
  if (!x || typeof x !== "object") return null;
  const e = x as Partial<FailureShape> & { name?: unknown; message?: unknown };
  const message = typeof e.message === "string" ? e.message : "";
  if (isName(e.name))
    return failure(e.name, message, {
      retriable: typeof e.retriable === "boolean" ? e.retriable : undefined,
      retryAfterMs: typeof e.retryAfterMs === "number" ? e.retryAfterMs : undefined,
      detail: typeof e.detail === "string" ? e.detail : undefined,
    });
  return failure("AgentError", message, { detail: typeof e.name === "string" ? e.name : undefined });
}
