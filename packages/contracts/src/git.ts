import { z } from "@hono/zod-openapi";

/**
 * Landing a session's work: commit it on the session's branch, merge that branch into a branch of
 * the user's own repository (or apply it there as a patch), and the leftovers `gc` tidies.
 */

export const GitIdentity = z
  .object({
    name: z
      .string()
      .trim()
      .min(1)
      .max(200)
      .regex(/^[^<>\n]+$/, "a name without <, > or newlines"),
    email: z
      .string()
      .trim()
      .max(320)
      .regex(/^[^<>\s@]+@[^<>\s@]+$/, "an email address such as ada@example.com"),
  })
  .strict()
  .openapi("GitIdentity");
export type GitIdentity = z.infer<typeof GitIdentity>;

export const CommitBody = z
  .object({
    message: z
      .string()
      .trim()
      .min(1, "message must not be empty")
      .max(20_000)
      .optional()
      .openapi({ description: "Default: written from the session (its first prompt and the changes)" }),
    author: GitIdentity.optional().openapi({
      description:
        "Who the commit is by (default: the git identity of the user's repository, else of the server's user)",
    }),
  })
  .strict()
  .openapi("CommitBody");
export type CommitBody = z.infer<typeof CommitBody>;

export const CommitInfo = z
  .object({
    sha: z.string(),
    subject: z.string(),
    author: GitIdentity,
    at: z.string().openapi({ description: "Author date, ISO" }),
  })
  .openapi("CommitInfo");
export type CommitInfo = z.infer<typeof CommitInfo>;

export const CommitResult = z
  .object({
    branch: z.string(),
    commit: CommitInfo,
    message: z.string().openapi({ description: "The whole commit message" }),
    files: z.number().int().openapi({ description: "Files the commit changes" }),
  })
  .openapi("CommitResult");
export type CommitResult = z.infer<typeof CommitResult>;

export const MergeBody = z
  .object({
    into: z
      .string()
      .trim()
      .min(1)
      .max(250)
      .regex(/^(?!-)[^\s~^:?*[\\]+$/, "a branch name")
      .optional()
      .openapi({ description: "Branch of the user's repository (default: its checked-out branch)" }),
    squash: z
      .boolean()
      .default(false)
      .openapi({ description: "One commit on the target instead of the branch's" }),
    resolve: z.boolean().default(false).openapi({
      description:
        "On a conflict, hand it to the agent instead of refusing: the target is fetched into the workspace and a turn asks the agent to merge it and resolve the conflicts; merge again when the turn ends",
    }),
    patch: z.boolean().default(false).openapi({
      description:
        "Apply the workspace's changes (committed or not) to the user's working tree as a patch, uncommitted; works on a dirty tree",
    }),
    message: z.string().trim().min(1).max(20_000).optional().openapi({
      description:
        "Message of the merge or squash commit, and of the commit of uncommitted changes made first",
    }),
    author: GitIdentity.optional(),
  })
  .strict()
  .openapi("MergeBody");
export type MergeBody = z.infer<typeof MergeBody>;

export const MergeResult = z
  .object({
    result: z.enum(["fast-forward", "merged", "squashed", "up-to-date", "patched", "resolving"]),
    into: z.string(),
    commit: z.string().nullable().openapi({ description: "The target branch's new head (null for a patch)" }),
    committed: CommitResult.nullable().openapi({
      description: "The commit of the workspace's uncommitted changes made before merging, if any",
    }),
    worktree: z.enum(["untouched", "updated", "patched"]).openapi({
      description:
        "What happened to the user's working tree: untouched (the target is not checked out), updated (it is, and was clean: it now shows the merge), patched",
    }),
    files: z.array(z.string()).openapi({ description: "Files the merge (or patch) changes on the target" }),
    message: z.string().openapi({ description: "What happened, for people" }),
  })
  .openapi("MergeResult");
export type MergeResult = z.infer<typeof MergeResult>;

export const Leftover = z
  .object({
    kind: z.enum(["workspace", "directory", "branch"]).openapi({
      description:
        "workspace: every session of it is deleted but its checkout is kept; directory: a checkout on disk that no workspace owns; branch: a flotilla/* branch in a user's repository that no live workspace owns",
    }),
    id: z.string().openapi({ description: "Workspace id, directory path, or repo:branch" }),
    path: z.string(),
    repo: z.string().nullable(),
    detail: z.string(),
  })
  .openapi("Leftover");
export type Leftover = z.infer<typeof Leftover>;

export const GcResult = z
  .object({
    items: z.array(Leftover),
    removed: z.number().int().openapi({ description: "How many of them were removed (0 on a dry run)" }),
  })
  .openapi("GcResult");
export type GcResult = z.infer<typeof GcResult>;

export const PushBody = z
  .object({
    remote: z.string().trim().min(1).max(4096).optional().openapi({
      description:
        "Where to push: a git URL, or the name of a remote of the user's local repository (default: the session's repository if it is a URL, else its `origin`)",
    }),
    author: GitIdentity.optional().openapi({
      description: "Who the commit of uncommitted changes made first is by",
    }),
  })
  .strict()
  .openapi("PushBody");
export type PushBody = z.infer<typeof PushBody>;

export const PushResult = z
  .object({
    remote: z.string().openapi({ description: "The URL pushed to" }),
    branch: z.string(),
    commit: z.string(),
    committed: CommitResult.nullable().openapi({
      description: "The commit of uncommitted changes made first, if any",
    }),
    forge: z.string().nullable().openapi({ description: "The configured forge whose credentials were used" }),
    message: z.string(),
  })
  .openapi("PushResult");
export type PushResult = z.infer<typeof PushResult>;

export const PullRequestBody = z
  .object({
    draft: z.boolean().default(true),
    base: z.string().trim().min(1).max(250).optional().openapi({
      description: "Branch to merge into (default: the session's base branch, else the repository's default)",
    }),
    title: z
      .string()
      .trim()
      .min(1)
      .max(256)
      .optional()
      .openapi({ description: "Default: written from the session" }),
    body: z.string().max(60_000).optional(),
    labels: z.array(z.string().min(1).max(50)).max(20).optional(),
    remote: PushBody.shape.remote,
    author: PushBody.shape.author,
  })
  .strict()
  .openapi("PullRequestBody");
export type PullRequestBody = z.infer<typeof PullRequestBody>;

export const PullRequestInfo = z
  .object({
    forge: z.string(),
    repo: z.string().openapi({ description: "owner/name" }),
    number: z.number().int(),
    url: z.string(),
    title: z.string(),
    state: z.enum(["open", "closed", "merged"]),
    draft: z.boolean(),
    head: z.string(),
    base: z.string(),
    headSha: z.string(),
    checks: z
      .object({
        state: z.enum(["pending", "success", "failure", "none"]),
        total: z.number().int(),
        passed: z.number().int(),
        failed: z.number().int(),
        pending: z.number().int(),
      })
      .openapi({ description: "Status checks and check runs on the head commit" }),
    updatedAt: z.string(),
  })
  .openapi("PullRequestInfo");
export type PullRequestInfo = z.infer<typeof PullRequestInfo>;

export const BranchState = z
  .object({
    branch: z.string().openapi({ description: "The session's branch, in its workspace" }),
    baseCommit: z.string(),
    head: z.string(),
    commits: z
      .array(CommitInfo)
      .openapi({ description: "Commits on the branch since its base, newest first" }),
    uncommitted: z
      .number()
      .int()
      .openapi({ description: "Files changed in the workspace and not committed" }),
    draftMessage: z
      .string()
      .openapi({ description: "The message a commit of those changes gets by default" }),
    author: GitIdentity.openapi({ description: "Who a commit is by when the request names nobody" }),
    coAuthor: GitIdentity.openapi({ description: "The agent, credited with a Co-authored-by trailer" }),
    local: z.boolean().openapi({ description: "The repository is a local directory: merge and patch work" }),
    target: z
      .string()
      .nullable()
      .openapi({ description: "The branch of the user's repository a merge goes into by default" }),
    merged: z
      .object({ into: z.string(), commit: z.string(), at: z.string() })
      .nullable()
      .openapi({ description: "The last merge of this branch into the user's repository" }),
    remote: z
      .object({
        url: z.string(),
        forge: z
          .string()
          .nullable()
          .openapi({ description: "The configured forge serving it: pull requests work" }),
      })
      .nullable()
      .openapi({ description: "Where a push goes by default (null: the repository has no remote)" }),
    pushed: z
      .object({ to: z.string(), commit: z.string(), at: z.string() })
      .nullable()
      .openapi({ description: "The last push of this branch" }),
    pullRequest: PullRequestInfo.nullable().openapi({
      description:
        "The branch's pull request as last read from its forge (GET /sessions/{id}/pr reads it again)",
    }),
  })
  .openapi("BranchState");
export type BranchState = z.infer<typeof BranchState>;
