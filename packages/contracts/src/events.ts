import { z } from "@hono/zod-openapi";
import { FAILURE_NAMES, FAILURES, type FailureShape } from "./failures.ts";
import type { EVENT_TYPES, Same } from "./light.ts";

/**
 * The event union: what a session did, normalized from the harness's own events. This is the unit
 * of storage and streaming. Version 1; a change that breaks a reader adds a new `v`.
 */
export const EVENT_VERSION = 1 as const;

export const SessionStatus = z.enum([
  "queued", // waiting for a harness slot: the runtime is at its budget (the event's reason says its place)
  "provisioning", // workspace and harness being made ready
  "idle", // ready, no turn running
  "running", // a turn is running
  "waiting_permission", // a turn is blocked on a permission request
  "interrupted", // the turn was cut short (harness or control plane lost); send a message to resume
  "failed", // could not be provisioned; see error
  "deleted",
]);
export type SessionStatus = z.infer<typeof SessionStatus>;

export const FailureName = z.enum(FAILURE_NAMES).openapi("FailureName", {
  description: Object.entries(FAILURES)
    .map(([name, f]) => `\`${name}\`: ${f.about}${f.retriable ? " (retriable by default)" : ""}`)
    .join("; "),
});
export type FailureName = z.infer<typeof FailureName>;

/** A failure: one of a closed list of kinds, with whether trying again can help (see failures.ts). */
export const ErrorInfo = z
  .object({
    name: FailureName,
    message: z.string().openapi({ description: "For people: one line, no stack trace" }),
    retriable: z
      .boolean()
      .openapi({ description: "Whether another attempt may succeed, decided where the failure was born" }),
    retryAfterMs: z
      .number()
      .int()
      .nonnegative()
      .optional()
      .openapi({ description: "Try again no sooner than this (a provider's rate limit)" }),
    detail: z.string().optional().openapi({
      description: "More for an operator (a status code, the agent's own error name); never a secret",
    }),
  })
  .openapi("ErrorInfo");
export type ErrorInfo = z.infer<typeof ErrorInfo>;
// The light shape (failures.ts, for the browser and the CLI) must describe the same wire shape.
const _sameFailure: Same<ErrorInfo, FailureShape> = true;
void _sameFailure;

export const ToolStatus = z.enum(["pending", "running", "completed", "error"]);
export const PermissionReply = z.enum(["once", "always", "reject"]);
export type PermissionReply = z.infer<typeof PermissionReply>;
export const TurnOutcome = z.enum(["success", "error", "aborted", "interrupted"]);
export type TurnOutcome = z.infer<typeof TurnOutcome>;

export const Tokens = z.object({
  input: z.number(),
  output: z.number(),
  reasoning: z.number(),
  cacheRead: z.number(),
  cacheWrite: z.number(),
});
export type Tokens = z.infer<typeof Tokens>;

/** The budgets the model gateway enforces: a task's own two, and the daily ones per project and token. */
export const BudgetName = z.enum(["maxCostUsd", "maxTokens", "projectDailyUsd", "tokenDailyUsd"]);
export type BudgetName = z.infer<typeof BudgetName>;

const ev = <T extends string, D extends z.ZodTypeAny>(type: T, data: D) =>
  z.object({ type: z.literal(type), data });

export const EventBody = z.discriminatedUnion("type", [
  ev(
    "session.status",
    z.object({ status: SessionStatus, reason: z.string().optional(), error: ErrorInfo.optional() }),
  ),
  ev(
    "turn.started",
    z.object({
      prompt: z.string(),
      model: z.string().optional(),
      agent: z.string().optional(),
      // The harness's id for the prompt's message: what fork takes to branch before this turn.
      messageId: z.string().optional(),
    }),
  ),
  ev(
    "turn.finished",
    z.object({
      outcome: TurnOutcome,
      error: ErrorInfo.optional(),
      durationMs: z.number().optional(),
      // What the turn leaves the session in (the session.status written with it says the same):
      // a client ends a turn on this one event.
      status: z.enum(["idle", "interrupted"]),
    }),
  ),
  ev("text.delta", z.object({ messageId: z.string(), partId: z.string(), delta: z.string() })),
  ev("text.completed", z.object({ messageId: z.string(), partId: z.string(), text: z.string() })),
  ev("reasoning.delta", z.object({ messageId: z.string(), partId: z.string(), delta: z.string() })),
  ev("reasoning.completed", z.object({ messageId: z.string(), partId: z.string(), text: z.string() })),
  ev(
    "tool.updated",
    z.object({
      messageId: z.string(),
      partId: z.string(),
      callId: z.string(),
      tool: z.string(),
      status: ToolStatus,
      title: z.string().optional(),
      input: z.unknown().optional(),
      output: z.string().optional(),
      error: z.string().optional(),
    }),
  ),
  ev("file.edited", z.object({ path: z.string() })),
  ev(
    "permission.asked",
    z.object({
      requestId: z.string(),
      permission: z.string(),
      patterns: z.array(z.string()),
      metadata: z.record(z.string(), z.unknown()),
      always: z.array(z.string()),
      callId: z.string().optional(),
    }),
  ),
  ev(
    "permission.replied",
    z.object({ requestId: z.string(), reply: PermissionReply, message: z.string().optional() }),
  ),
  ev(
    "todo.updated",
    z.object({
      todos: z.array(z.object({ content: z.string(), status: z.string(), priority: z.string().optional() })),
    }),
  ),
  ev("usage", z.object({ messageId: z.string(), model: z.string(), tokens: Tokens, cost: z.number() })),
  ev("provider.retry", z.object({ attempt: z.number(), message: z.string() })),
  ev("error", ErrorInfo),
  ev(
    "harness.state",
    z.object({
      harnessId: z.string(),
      state: z.enum(["starting", "ready", "lost", "stopped", "adopted"]),
      reason: z.string().optional(),
    }),
  ),
  // Who drives the session's terminal; holder is a client label (token id and client id), null when free.
  ev("terminal.lease", z.object({ holder: z.string().nullable(), reason: z.string() })),
  // The session's work landed somewhere: committed on its branch, merged or patched into the user's repository.
  ev(
    "git",
    z.object({
      action: z.enum(["commit", "merge", "patch", "push", "pull_request"]),
      branch: z.string(),
      commit: z.string().optional(),
      into: z.string().optional(),
      url: z.string().optional(),
      summary: z.string(),
    }),
  ),
  // A budget in `warn` mode was crossed: the model gateway let the call through and says so, once
  // per budget (per task; per day for a daily one).
  ev(
    "budget.warning",
    z.object({
      budget: BudgetName,
      limit: z.number(),
      spent: z.number(),
      unit: z.enum(["usd", "tokens"]),
      taskId: z.string().nullable(),
      message: z.string(),
    }),
  ),
]);
export type EventBody = z.infer<typeof EventBody>;
export type EventType = EventBody["type"];
// EVENT_TYPES (light.ts, for the browser) must list exactly the union's types.
const _allTypes: Same<(typeof EVENT_TYPES)[number], EventType> = true;
void _allTypes;
export type EventData<T extends EventType> = Extract<EventBody, { type: T }>["data"];

export const SessionEvent = z
  .object({
    id: z.string(),
    sessionId: z.string(),
    seq: z.number().int().positive().openapi({ description: "Gap-free per-session sequence number, from 1" }),
    v: z.literal(EVENT_VERSION),
    at: z.string().openapi({ description: "ISO time the control plane stored the event" }),
  })
  .and(EventBody)
  .openapi("SessionEvent");
export type SessionEvent = z.infer<typeof SessionEvent>;
