import {
  BranchState,
  CommitBody,
  CommitResult,
  GcResult,
  MergeBody,
  MergeResult,
  PullRequestBody,
  PullRequestInfo,
  PushBody,
  PushResult,
} from "@flotilla/contracts";
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { requireAdmin } from "../../identity/principal.ts";
import type { Env, Services } from "../context.ts";
import { errorResponses, IdParams, json } from "../openapi.ts";

const errors = errorResponses({
  400: "Invalid input",
  401: "No or bad token",
  404: "No such session",
  409: "A turn is running (`session_busy`), nothing to commit (`nothing_to_commit`), the branch conflicts with the target (`merge_conflict`, files in `details.files`), or the target's working tree has uncommitted changes (`worktree_dirty`)",
});

/** Landing a session's work: its branch, commit, merge or patch into the user's repository, and gc. */
export function landRoutes(app: OpenAPIHono<Env>, s: Services): void {
  const tags = ["sessions"];
  app.openapi(
    createRoute({
      method: "get",
      path: "/sessions/{id}/branch",
      tags,
      description:
        "The session's branch in its workspace: commits since its base, files not committed yet, the message and author a commit gets by default, and where a merge goes.",
      request: { params: IdParams },
      responses: { 200: json(BranchState, "The branch"), ...errors },
    }),
    async (c) => c.json(await s.landing.branch(c.req.valid("param").id, c.get("principal")), 200),
  );
  app.openapi(
    createRoute({
      method: "post",
      path: "/sessions/{id}/commit",
      tags,
      description:
        "Commits every change in the workspace (untracked files included) on the session's branch. The agent is credited with a `Co-authored-by` trailer. Refused while a turn of any session of the workspace runs.",
      request: {
        params: IdParams,
        body: { content: { "application/json": { schema: CommitBody } }, required: false },
      },
      responses: { 200: json(CommitResult, "Committed"), ...errors },
    }),
    async (c) =>
      c.json(
        await s.landing.commit(c.req.valid("param").id, c.req.valid("json") ?? {}, c.get("principal")),
        200,
      ),
  );
  app.openapi(
    createRoute({
      method: "post",
      path: "/sessions/{id}/merge",
      tags,
      description:
        "Merges the session's branch into a branch of the user's local repository (uncommitted changes are committed first): a fast-forward, or a clean merge computed without touching any working tree. A conflict is refused with the files named. When the target is checked out its working tree must be clean, and is updated with it. `patch: true` applies the changes to the working tree instead, uncommitted, and works on a dirty tree.",
      request: {
        params: IdParams,
        body: { content: { "application/json": { schema: MergeBody } }, required: false },
      },
      responses: { 200: json(MergeResult, "Merged (or already there)"), ...errors },
    }),
    async (c) =>
      c.json(
        await s.landing.merge(
          c.req.valid("param").id,
          c.req.valid("json") ?? MergeBody.parse({}),
          c.get("principal"),
        ),
        200,
      ),
  );
  app.openapi(
    createRoute({
      method: "post",
      path: "/sessions/{id}/push",
      tags,
      description:
        "Pushes the session's branch (uncommitted changes committed first) to a remote, with the credentials of the forge configured for its host, handed to git by a credential helper: never in a URL, a file, the sandbox or a log. The remote branch is the session's own and is overwritten.",
      request: {
        params: IdParams,
        body: { content: { "application/json": { schema: PushBody } }, required: false },
      },
      responses: { 200: json(PushResult, "Pushed"), ...errors, 502: errors[409] },
    }),
    async (c) =>
      c.json(
        await s.landing.push(c.req.valid("param").id, c.req.valid("json") ?? {}, c.get("principal")),
        200,
      ),
  );
  app.openapi(
    createRoute({
      method: "post",
      path: "/sessions/{id}/pr",
      tags,
      description:
        "Pushes the session's branch and opens its pull request on the forge (draft by default; title and body written from the session, with a link back), or returns the open one it already has.",
      request: {
        params: IdParams,
        body: { content: { "application/json": { schema: PullRequestBody } }, required: false },
      },
      responses: { 200: json(PullRequestInfo, "The pull request"), ...errors, 502: errors[409] },
    }),
    async (c) =>
      c.json(
        await s.landing.openPullRequest(
          c.req.valid("param").id,
          c.req.valid("json") ?? PullRequestBody.parse({}),
          c.get("principal"),
        ),
        200,
      ),
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/sessions/{id}/pr",
      tags,
      description:
        "The session's pull request as its forge has it now: state and status checks. A change since the last read is logged as a `git` event (and so reaches webhooks and the UI).",
      request: { params: IdParams },
      responses: { 200: json(PullRequestInfo, "The pull request"), ...errors, 502: errors[409] },
    }),
    async (c) => c.json(await s.landing.pullRequest(c.req.valid("param").id, c.get("principal")), 200),
  );
  app.openapi(
    createRoute({
      method: "post",
      path: "/forges/{name}/webhook",
      tags: ["forges"],
      security: [],
      description:
        "Where a forge (GitHub) sends its webhooks; authenticated by their signature (X-Hub-Signature-256, the forge's `webhookSecretEnv`), not by a token. An `issue_comment` `/flotilla <prompt>` by a permitted author (`commandAssociations`) starts a task on the repository that opens a pull request, and its result is posted back on the issue.",
      request: { params: z.object({ name: z.string().min(1).max(100) }) },
      responses: {
        202: json(z.object({ taskId: z.string(), created: z.boolean() }), "A task was started (or had been)"),
        200: json(z.object({ ignored: z.string() }), "Nothing to do, and why"),
        401: json(z.object({ error: z.string() }), "Bad or missing signature"),
      },
    }),
    async (c) => {
      const out = await s.forgeCommands.receive(c.req.valid("param").name, await c.req.text(), {
        // GitHub's headers; Gitea sends its own (and, for compatibility, GitHub's as well).
        event: c.req.header("x-github-event") ?? c.req.header("x-gitea-event"),
        signature: c.req.header("x-hub-signature-256") ?? c.req.header("x-gitea-signature"),
        delivery: c.req.header("x-github-delivery") ?? c.req.header("x-gitea-delivery"),
      });
      if (out.status === 401) return c.json({ error: out.error }, 401);
      if (out.status === 200) return c.json({ ignored: out.ignored }, 200);
      return c.json({ taskId: out.taskId, created: out.created }, 202);
    },
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/gc",
      tags: ["system"],
      description: "Checkouts and branches that no live session owns, on this replica (admin).",
      responses: { 200: json(GcResult, "The leftovers; nothing removed"), ...errors },
    }),
    async (c) => {
      requireAdmin(c.get("principal"));
      return c.json(await s.leftovers.gc(false), 200);
    },
  );
  app.openapi(
    createRoute({
      method: "post",
      path: "/gc",
      tags: ["system"],
      description: "Removes the leftovers `GET /gc` lists (admin).",
      responses: { 200: json(GcResult, "What was found, and how many were removed"), ...errors },
    }),
    async (c) => {
      requireAdmin(c.get("principal"));
      return c.json(await s.leftovers.gc(true), 200);
    },
  );
}
