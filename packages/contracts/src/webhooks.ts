import { z } from "@hono/zod-openapi";
import { BudgetName, ErrorInfo, SessionStatus } from "./events.ts";
import { TaskState } from "./tasks.ts";

/**
 * What a subscription listens to: `task.*` (every task transition), one task state (`task.succeeded`),
 * `session.status` (every session status change), or `budget.warning` (a budget in warn mode crossed).
 */
export const WebhookEventPattern = z
  .enum(["task.*", ...TaskState.options.map((s) => `task.${s}` as const), "session.status", "budget.warning"])
  .openapi("WebhookEventPattern");
export type WebhookEventPattern = z.infer<typeof WebhookEventPattern>;
export { DEFAULT_WEBHOOK_EVENTS } from "./light.ts";

/** Request headers on every delivery. The signature covers `<timestamp>.<raw body>`. */
export const WEBHOOK_HEADERS = {
  event: "x-flotilla-event",
  delivery: "x-flotilla-delivery",
  signature: "x-flotilla-signature",
  timestamp: "x-flotilla-timestamp",
} as const;

// Only http(s): a webhook must never make the control plane open file:, data: or other schemes.
const WebhookUrl = z
  .url({ protocol: /^https?$/, error: "expected an http or https URL" })
  .max(2048)
  .openapi({ example: "https://example.com/hooks/flotilla" });

export const CreateWebhookBody = z
  .object({
    url: WebhookUrl,
    projectId: z.string().min(1).max(100).optional().openapi({
      description: "Only this project's tasks and sessions; omit for every project of the organisation",
    }),
    events: z
      .array(WebhookEventPattern)
      .min(1)
      .max(20)
      .optional()
      .openapi({ description: 'Default: every event (`["task.*", "session.status"]`)' }),
    secret: z.string().min(16).max(256).optional().openapi({
      description: "Signing secret; generated when absent. Returned only in the response to this request",
    }),
  })
  .strict()
  .openapi("CreateWebhook");
export type CreateWebhookBody = z.input<typeof CreateWebhookBody>;

export const Webhook = z
  .object({
    id: z.string(),
    url: z.string(),
    projectId: z.string().nullable(),
    events: z.array(WebhookEventPattern),
    createdAt: z.string(),
  })
  .openapi("Webhook");
export type Webhook = z.infer<typeof Webhook>;

export const CreatedWebhook = Webhook.extend({
  secret: z.string().openapi({ description: "Shown once: store it to verify signatures" }),
}).openapi("CreatedWebhook");
export type CreatedWebhook = z.infer<typeof CreatedWebhook>;

export const WebhookSecret = z
  .object({
    secret: z.string(),
    createdAt: z.string(),
  })
  .openapi("WebhookSecret", {
    description: "The organisation's secret that signs deliveries to tasks' own `webhook` URLs",
  });
export type WebhookSecret = z.infer<typeof WebhookSecret>;

export const DeliveryStatus = z.enum(["pending", "delivered", "failed"]);
export type DeliveryStatus = z.infer<typeof DeliveryStatus>;

export const DeliveryAttempt = z
  .object({
    n: z.number().int(),
    at: z.string(),
    statusCode: z.number().int().nullable().openapi({ description: "Null when no response came back" }),
    error: z.string().nullable(),
    durationMs: z.number().int(),
  })
  .openapi("DeliveryAttempt");
export type DeliveryAttempt = z.infer<typeof DeliveryAttempt>;

export const WebhookDelivery = z
  .object({
    id: z.string().openapi({ description: "Sent as x-flotilla-delivery: the same on every retry" }),
    subscriptionId: z.string().nullable().openapi({ description: "Null for a task's own `webhook` URL" }),
    taskId: z.string().nullable(),
    url: z.string(),
    event: z.string(),
    payload: z.unknown().openapi({ description: "The body's `data`" }),
    status: DeliveryStatus,
    attempts: z.number().int(),
    nextAttemptAt: z.string().nullable(),
    lastStatusCode: z.number().int().nullable(),
    lastError: z.string().nullable(),
    attemptLog: z.array(DeliveryAttempt),
    createdAt: z.string(),
    deliveredAt: z.string().nullable(),
  })
  .openapi("WebhookDelivery");
export type WebhookDelivery = z.infer<typeof WebhookDelivery>;

export const ListDeliveriesQuery = z.object({
  status: DeliveryStatus.optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(200).optional(),
});
export const DeliveryPage = z
  .object({ items: z.array(WebhookDelivery), nextCursor: z.string().nullable() })
  .openapi("DeliveryPage");
export type DeliveryPage = z.infer<typeof DeliveryPage>;

/**
 * The JSON body of every delivery. `data` is, for `task.<state>`: `{ task, from, to, reason }`;
 * for `session.status`: `{ sessionId, projectId, status, reason?, error?, seq }`.
 */
export const WebhookBody = z
  .object({
    id: z.string().openapi({ description: "The delivery id (as x-flotilla-delivery)" }),
    event: z.string(),
    createdAt: z.string(),
    data: z.unknown(),
  })
  .openapi("WebhookBody");
export type WebhookBody = z.infer<typeof WebhookBody>;

export const SessionStatusPayload = z.object({
  sessionId: z.string(),
  projectId: z.string(),
  status: SessionStatus,
  reason: z.string().optional(),
  error: ErrorInfo.optional(),
  seq: z.number().int(),
});
export type SessionStatusPayload = z.infer<typeof SessionStatusPayload>;

/** The body of a `budget.warning` delivery: the session event's data, and where it happened. */
export const BudgetWarningPayload = z.object({
  sessionId: z.string(),
  projectId: z.string(),
  taskId: z.string().nullable(),
  budget: BudgetName,
  limit: z.number(),
  spent: z.number(),
  unit: z.enum(["usd", "tokens"]),
  message: z.string(),
  seq: z.number().int(),
});
export type BudgetWarningPayload = z.infer<typeof BudgetWarningPayload>;
