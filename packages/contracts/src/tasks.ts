import { z } from "@hono/zod-openapi";
import { PermissionPolicy } from "./api.ts";
import { ErrorInfo, Tokens } from "./events.ts";

export const TaskState = z.enum([
  "queued",
  "running",
  "succeeded",
  "failed",
  "cancelled",
  "timed_out",
  "dead",
]);
export type TaskState = z.infer<typeof TaskState>;
export { FINAL_TASK_STATES } from "./light.ts";

const Labels = z
  .record(z.string().min(1).max(63), z.string().max(255))
  .refine((l) => Object.keys(l).length <= 32, "at most 32 labels");

export const TaskPullRequest = z
  .object({
    draft: z.boolean().default(true),
    base: z.string().trim().min(1).max(250).optional(),
    title: z.string().trim().min(1).max(256).optional(),
  })
  .strict()
  .openapi("TaskPullRequest");

export const CreateTaskBody = z
  .object({
    repo: z
      .string()
      .min(1)
      .max(4096)
      .openapi({ description: "Local path of a git repository, or a git URL" }),
    baseRef: z.string().min(1).max(255).optional(),
    prompt: z.string().trim().min(1, "prompt must not be empty").max(200_000),
    model: z
      .string()
      .regex(/^[^/\s]+\/\S+$/, "expected provider/model")
      .optional(),
    agent: z.string().min(1).max(100).optional(),
    permission: PermissionPolicy.optional().openapi({
      description: "Default `allow`: a queued task runs unattended",
    }),
    priority: z.number().int().min(-100).max(100).default(0).openapi({ description: "Higher runs first" }),
    timeoutMs: z
      .number()
      .int()
      .min(1000)
      .max(24 * 3600_000)
      .default(3600_000),
    maxAttempts: z.number().int().min(1).max(20).default(3),
    labels: Labels.default({}),
    idempotencyKey: z
      .string()
      .min(1)
      .max(200)
      .optional()
      .openapi({ description: "A second submit with the same key returns the first task" }),
    verify: z.string().min(1).max(10_000).optional().openapi({
      description: "Shell command run in the workspace after the agent's turn; exit 0 = success",
    }),
    webhook: z
      .url({ protocol: /^https?$/ })
      .max(2048)
      .optional()
      .openapi({ description: "Receives signed task state changes" }),
    runtime: z.enum(["sandbox", "local"]).optional().openapi({
      description:
        "Where its agent and verify run (default: the configured runtime). `local` needs an admin token",
    }),
    commit: z.boolean().optional().openapi({
      description: "On success, commit the workspace's changes on the session's branch (implied by `pr`)",
    }),
    pr: TaskPullRequest.optional().openapi({
      description: "On success, push the session's branch and open a pull request on the repository's forge",
    }),
    maxCostUsd: z.number().positive().max(1_000_000).optional().openapi({
      description:
        "Hard budget in USD over every attempt: the model gateway refuses a call that could cost more (the turn fails `BudgetExceeded`)",
    }),
    maxTokens: z.number().int().positive().max(1_000_000_000).optional().openapi({
      description: "Hard budget of model tokens (input + output) over every attempt, enforced the same way",
    }),
    budgetMode: z.enum(["hard", "warn"]).optional().openapi({
      description:
        "hard (default): a call past maxCostUsd/maxTokens is refused. warn: it goes through, and a `budget.warning` event and webhook say which budget was crossed",
    }),
  })
  .strict()
  .openapi("CreateTask");
export type CreateTaskBody = z.input<typeof CreateTaskBody>;

export const TaskResult = z
  .object({
    summary: z.string().nullable(),
    files: z.number().int(),
    additions: z.number().int(),
    deletions: z.number().int(),
    tokens: Tokens,
    cost: z.number(),
    durationMs: z.number().int(),
    verify: z
      .object({ command: z.string(), exitCode: z.number().int().nullable(), output: z.string() })
      .nullable(),
    commit: z
      .string()
      .nullable()
      .optional()
      .openapi({ description: "The commit made on success (`commit` or `pr`)" }),
    pullRequest: z
      .object({ number: z.number().int(), url: z.string() })
      .nullable()
      .optional()
      .openapi({ description: "The pull request opened on success (`pr`)" }),
  })
  .openapi("TaskResult");
export type TaskResult = z.infer<typeof TaskResult>;

export const TaskAttempt = z
  .object({
    n: z.number().int(),
    sessionId: z.string().nullable(),
    replica: z.string(),
    outcome: z.string().nullable(),
    error: ErrorInfo.nullable(),
    startedAt: z.string(),
    finishedAt: z.string().nullable(),
  })
  .openapi("TaskAttempt");

export const Task = z
  .object({
    id: z.string(),
    state: TaskState,
    repo: z.string(),
    baseRef: z.string(),
    prompt: z.string(),
    model: z.string(),
    agent: z.string().nullable(),
    priority: z.number().int(),
    timeoutMs: z.number().int(),
    maxAttempts: z.number().int(),
    attempts: z.number().int(),
    labels: z.record(z.string(), z.string()),
    idempotencyKey: z.string().nullable(),
    verify: z.string().nullable(),
    webhook: z.string().nullable(),
    commit: z.boolean(),
    pr: TaskPullRequest.nullable(),
    maxCostUsd: z.number().nullable(),
    maxTokens: z.number().int().nullable(),
    budgetMode: z.enum(["hard", "warn"]),
    projectId: z.string(),
    sessionId: z.string().nullable().openapi({ description: "The latest attempt's session" }),
    result: TaskResult.nullable(),
    error: ErrorInfo.nullable(),
    availableAt: z.string().openapi({ description: "Not claimed before this time (retry back-off)" }),
    createdAt: z.string(),
    updatedAt: z.string(),
    finishedAt: z.string().nullable(),
    history: z
      .array(
        z.object({
          at: z.string(),
          from: TaskState.nullable(),
          to: TaskState,
          reason: z.string().nullable(),
        }),
      )
      .optional(),
    attemptList: z.array(TaskAttempt).optional(),
  })
  .openapi("Task");
export type Task = z.infer<typeof Task>;

export const ListTasksQuery = z.object({
  state: TaskState.optional(),
  label: z
    .string()
    .regex(/^[^=]+=.*$/, "expected key=value")
    .optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(200).optional(),
});
export const TaskPage = z
  .object({ items: z.array(Task), nextCursor: z.string().nullable() })
  .openapi("TaskPage");
export type TaskPage = z.infer<typeof TaskPage>;
