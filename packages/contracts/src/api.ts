import { z } from "@hono/zod-openapi";
import { ErrorInfo, PermissionReply, SessionStatus, Tokens, ToolStatus } from "./events.ts";

const Action = z.enum(["allow", "ask", "deny"]);

/**
 * A permission policy: a preset, or OpenCode's own shape (`{"edit":"ask","bash":{"*":"ask","git *":"allow"}}`,
 * last matching pattern wins). Presets: `ask` asks before edits and commands, `allow` runs unattended,
 * `read-only` denies edits and commands.
 */
export const PermissionPolicy = z
  .union([
    z.enum(["ask", "allow", "read-only"]),
    z.record(z.string().min(1), z.union([Action, z.record(z.string().min(1), Action)])),
  ])
  .openapi("PermissionPolicy");
export type PermissionPolicy = z.infer<typeof PermissionPolicy>;

const ModelRef = z
  .string()
  .regex(/^[^/\s]+\/\S+$/, "expected provider/model, e.g. anthropic/claude-sonnet-4-5")
  .openapi({ example: "scripted/scripted-1" });

/** Where an agent runs: a bubblewrap sandbox (the default) or, unsafe, a plain local process. */
export const Runtime = z.enum(["sandbox", "local"]);
export type Runtime = z.infer<typeof Runtime>;

export const CreateSessionBody = z
  .object({
    repo: z
      .string()
      .min(1)
      .max(4096)
      .openapi({ description: "Local path of a git repository, or a git URL" }),
    baseRef: z
      .string()
      .min(1)
      .max(255)
      .optional()
      .openapi({ description: "Ref to branch from (default HEAD)" }),
    prompt: z.string().trim().min(1, "prompt must not be empty").max(200_000),
    model: ModelRef.optional(),
    agent: z.string().min(1).max(100).optional(),
    permission: PermissionPolicy.optional(),
    title: z.string().min(1).max(200).optional(),
    runtime: Runtime.optional().openapi({
      description: "Where the agent runs (default: the configured runtime). `local` needs an admin token",
    }),
  })
  .strict()
  .openapi("CreateSession");
export type CreateSessionBody = z.infer<typeof CreateSessionBody>;

export const Session = z
  .object({
    id: z.string(),
    title: z.string(),
    status: SessionStatus,
    repo: z.string(),
    baseRef: z.string(),
    baseCommit: z.string(),
    branch: z.string().nullable(),
    workspaceId: z.string(),
    workspacePath: z.string(),
    shardId: z.string(),
    runtime: z.string().openapi({ description: "The runtime its workspace's harness runs on" }),
    model: z.string(),
    agent: z.string().nullable(),
    permission: PermissionPolicy,
    parentId: z.string().nullable(),
    projectId: z.string(),
    lastSeq: z.number().int(),
    pendingPermissions: z.number().int(),
    error: ErrorInfo.nullable(),
    usage: z.object({ tokens: Tokens, cost: z.number() }),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi("Session");
export type Session = z.infer<typeof Session>;

export const ListSessionsQuery = z.object({
  status: SessionStatus.optional(),
  q: z
    .string()
    .max(200)
    .optional()
    .openapi({ description: "Only sessions whose title or repository contains this (any case); blank: all" }),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(200).optional(),
});
export const SessionPage = z
  .object({ items: z.array(Session), nextCursor: z.string().nullable() })
  .openapi("SessionPage");
export type SessionPage = z.infer<typeof SessionPage>;

export const SendMessageBody = z
  .object({
    text: z.string().trim().min(1, "text must not be empty").max(200_000),
    model: ModelRef.optional(),
    agent: z.string().min(1).max(100).optional(),
  })
  .strict()
  .openapi("SendMessage");
export type SendMessageBody = z.infer<typeof SendMessageBody>;

export const ForkBody = z
  .object({ messageId: z.string().min(1).optional().openapi({ description: "Fork before this message" }) })
  .strict();

export const MessagePart = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text"), id: z.string(), text: z.string() }),
  z.object({ type: z.literal("reasoning"), id: z.string(), text: z.string() }),
  z.object({
    type: z.literal("tool"),
    id: z.string(),
    tool: z.string(),
    status: ToolStatus,
    title: z.string().optional(),
    input: z.unknown().optional(),
    output: z.string().optional(),
    error: z.string().optional(),
  }),
]);
export const Message = z
  .object({
    id: z.string(),
    role: z.enum(["user", "assistant"]),
    at: z.string(),
    parts: z.array(MessagePart),
  })
  .openapi("Message");
export type Message = z.infer<typeof Message>;

export const DiffFile = z.object({
  path: z.string(),
  status: z.enum(["added", "modified", "deleted", "renamed"]),
  additions: z.number().int(),
  deletions: z.number().int(),
  binary: z.boolean(),
});
export const Diff = z
  .object({
    baseCommit: z.string(),
    files: z.array(DiffFile),
    additions: z.number().int(),
    deletions: z.number().int(),
    patch: z.string(),
  })
  .openapi("Diff");
export type Diff = z.infer<typeof Diff>;

export const PermissionRequest = z
  .object({
    id: z.string(),
    sessionId: z.string(),
    permission: z.string(),
    patterns: z.array(z.string()),
    metadata: z.record(z.string(), z.unknown()),
    askedAt: z.string(),
  })
  .openapi("PermissionRequest");
export type PermissionRequest = z.infer<typeof PermissionRequest>;

export const PermissionReplyBody = z
  .object({ reply: PermissionReply, message: z.string().max(10_000).optional() })
  .strict()
  .openapi("PermissionReply");
export type PermissionReplyBody = z.infer<typeof PermissionReplyBody>;

export const Model = z.object({
  id: z.string().openapi({ description: "provider/model" }),
  provider: z.string(),
  name: z.string(),
  demo: z.boolean().openapi({ description: "A scripted stand-in, not a real LLM" }),
});
export const Catalog = z
  .object({ default: z.string().nullable(), models: z.array(Model) })
  .openapi("Catalog");
export type Catalog = z.infer<typeof Catalog>;

export const EventsQuery = z.object({
  after: z.coerce.number().int().min(0).optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(1000),
});

export const TokenRole = z.enum(["admin", "member"]);
export const CreateTokenBody = z
  .object({ name: z.string().trim().min(1).max(100), role: TokenRole.default("member") })
  .strict()
  .openapi("CreateToken");
export const TokenInfo = z
  .object({
    id: z.string(),
    name: z.string(),
    role: TokenRole,
    prefix: z.string().openapi({ description: "First characters of the token, to recognise it" }),
    createdAt: z.string(),
    lastUsedAt: z.string().nullable(),
    revokedAt: z.string().nullable(),
  })
  .openapi("TokenInfo");
export type TokenInfo = z.infer<typeof TokenInfo>;
export const CreatedToken = z
  .object({ token: z.string().openapi({ description: "Shown once" }), info: TokenInfo })
  .openapi("CreatedToken");

export const Harness = z
  .object({
    id: z.string(),
    driver: z.string(),
    state: z.enum(["starting", "ready", "stopping", "stopped", "lost"]),
    pid: z.number().nullable(),
    url: z.string().nullable(),
    shardId: z
      .string()
      .openapi({ description: "The state shard it serves; its workspaces share the harness" }),
    projectId: z
      .string()
      .nullable()
      .openapi({ description: "Null for a warm harness not yet given to a project" }),
    rssBytes: z
      .number()
      .nullable()
      .openapi({ description: "Resident memory of the harness and its children, last sampled" }),
    sessionsServed: z.number().int(),
    activeSessions: z.number().int(),
    startedAt: z.string(),
    stoppedAt: z.string().nullable(),
    reason: z.string().nullable(),
    warning: z.string().nullable().openapi({
      description: "Set when the harness runs outside any sandbox (runtime local): a warning for people",
    }),
  })
  .openapi("Harness");
export type Harness = z.infer<typeof Harness>;

/** One line of the activity feed (`GET /activity`): that something changed, not what. */
export const ActivityNotice = z
  .discriminatedUnion("kind", [
    z.object({ kind: z.literal("session"), id: z.string(), status: SessionStatus.optional() }),
    z.object({ kind: z.literal("task"), id: z.string(), state: z.string() }),
  ])
  .openapi("ActivityNotice");
export type ActivityNotice = z.infer<typeof ActivityNotice>;

const Count = z.number().int().min(0);
export const OverviewFailure = z
  .object({
    kind: z.enum(["session", "task"]),
    id: z.string(),
    title: z.string().openapi({ description: "The session's title, or the first line of the task's prompt" }),
    state: z.string().openapi({ description: "The session's status or the task's state" }),
    error: ErrorInfo.nullable(),
    at: z.string().openapi({ description: "When it failed (a task's finish, a session's last change)" }),
  })
  .openapi("OverviewFailure");
export type OverviewFailure = z.infer<typeof OverviewFailure>;

export const OverviewHarness = z
  .object({
    id: z.string(),
    state: z.enum(["starting", "ready", "stopping"]),
    rssBytes: z.number().nullable().openapi({ description: "Resident memory, last sampled" }),
    activeSessions: z.number().int(),
    projectId: z.string().nullable().openapi({ description: "Null for a warm harness" }),
    repo: z.string().nullable().openapi({ description: "The project's repository" }),
    startedAt: z.string(),
  })
  .openapi("OverviewHarness");
export type OverviewHarness = z.infer<typeof OverviewHarness>;

/**
 * One reading of the organisation's fleet for a dashboard. "Today" is the UTC day: from 00:00 UTC
 * (`since`) to the reading (`at`).
 */
export const Overview = z
  .object({
    at: z.string().openapi({ description: "Server time of the reading" }),
    since: z.string().openapi({ description: "Start of today's window: the last midnight, UTC" }),
    sessions: z
      .object({
        queued: Count,
        provisioning: Count,
        idle: Count,
        running: Count,
        waiting_permission: Count,
        interrupted: Count,
        failed: Count,
      })
      .openapi({ description: "Sessions (not deleted) by status, now" }),
    tasks: z
      .object({
        queued: Count,
        running: Count,
        succeeded: Count,
        failed: Count,
        cancelled: Count,
        timed_out: Count,
        dead: Count,
      })
      .openapi({ description: "queued and running: now; the final states: tasks that ended today (UTC)" }),
    queue: z.object({
      depth: Count.openapi({ description: "Tasks queued" }),
      ready: Count.openapi({ description: "Queued tasks a scheduler may claim now (not backing off)" }),
    }),
    harnesses: z.object({
      items: z.array(OverviewHarness).openapi({ description: "Live harnesses (starting, ready, stopping)" }),
      totalRssBytes: z.number().openapi({ description: "Sum of their last sampled memory" }),
    }),
    today: z
      .object({
        tokens: Tokens,
        cost: z.number(),
        messages: Count.openapi({ description: "Assistant messages that reported usage" }),
        failedTasks: Count.openapi({ description: "Tasks that ended failed, dead or timed out" }),
        failedSessions: Count.openapi({ description: "Sessions that failed or whose turn failed" }),
      })
      .openapi({ description: "Since `since` (00:00 UTC), summed from the sessions' usage events" }),
    failures: z.array(OverviewFailure).openapi({
      description:
        "Newest first, at most 10: failed, dead and timed-out tasks; sessions that failed, were interrupted, or whose last turn ended in an error",
    }),
    leftovers: Count.openapi({
      description:
        "Checkouts and branches no live session owns (`flotilla gc` lists and removes them); counted at most once a minute",
    }),
  })
  .openapi("Overview");
export type Overview = z.infer<typeof Overview>;
