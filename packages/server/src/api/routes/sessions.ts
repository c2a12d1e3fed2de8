import {
  CreateSessionBody,
  Diff,
  EventsQuery,
  ForkBody,
  ListSessionsQuery,
  Message,
  PermissionReplyBody,
  PermissionRequest,
  SendMessageBody,
  Session,
  SessionEvent,
  SessionPage,
} from "@flotilla/contracts";
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { auditContext, type Env, type Services } from "../context.ts";
import { errorResponses, IdParams, json, jsonBody } from "../openapi.ts";
import { sessionEventStream } from "../sse.ts";

const errors = errorResponses({
  400: "Invalid input",
  401: "No or bad token",
  404: "No such session",
  409: "Session busy or request already answered",
  422: "Repository missing, not git, or not clonable",
});
const SessionParams = IdParams;

export function sessionRoutes(app: OpenAPIHono<Env>, s: Services): void {
  const tags = ["sessions"];
  app.openapi(
    createRoute({
      method: "post",
      path: "/sessions",
      tags,
      request: jsonBody(CreateSessionBody),
      responses: { 201: json(Session, "Created; provisioning continues, watch its events"), ...errors },
    }),
    async (c) =>
      c.json(await s.sessions.create(c.req.valid("json"), c.get("principal"), {}, auditContext(c)), 201),
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/sessions",
      tags,
      request: { query: ListSessionsQuery },
      responses: { 200: json(SessionPage, "Newest first"), ...errors },
    }),
    async (c) => c.json(await s.sessions.list(c.req.valid("query"), c.get("principal")), 200),
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/sessions/{id}",
      tags,
      request: { params: SessionParams },
      responses: { 200: json(Session, "The session"), ...errors },
    }),
    async (c) => c.json(await s.sessions.get(c.req.valid("param").id, c.get("principal")), 200),
  );
  app.openapi(
    createRoute({
      method: "delete",
      path: "/sessions/{id}",
      tags,
      request: {
        params: SessionParams,
        query: z.object({ workspace: z.enum(["true", "false"]).default("false") }),
      },
      responses: {
        200: json(
          z.object({ deleted: z.literal(true) }),
          "Deleted; its directory released on the harness; workspace removed if asked",
        ),
        ...errors,
      },
    }),
    async (c) => {
      await s.sessions.remove(
        c.req.valid("param").id,
        { workspace: c.req.valid("query").workspace === "true" },
        c.get("principal"),
        auditContext(c),
      );
      return c.json({ deleted: true as const }, 200);
    },
  );
  app.openapi(
    createRoute({
      method: "post",
      path: "/sessions/{id}/messages",
      tags,
      request: { params: SessionParams, ...jsonBody(SendMessageBody) },
      responses: { 202: json(Session, "Turn started"), ...errors },
    }),
    async (c) =>
      c.json(await s.sessions.send(c.req.valid("param").id, c.req.valid("json"), c.get("principal")), 202),
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/sessions/{id}/messages",
      tags,
      request: { params: SessionParams },
      responses: { 200: json(z.object({ items: z.array(Message) }), "The conversation"), ...errors },
    }),
    async (c) =>
      c.json({ items: await s.sessions.messages(c.req.valid("param").id, c.get("principal")) }, 200),
  );
  app.openapi(
    createRoute({
      method: "post",
      path: "/sessions/{id}/abort",
      tags,
      request: { params: SessionParams },
      responses: { 200: json(Session, "Turn aborted (or nothing was running)"), ...errors },
    }),
    async (c) =>
      c.json(await s.sessions.abort(c.req.valid("param").id, c.get("principal"), auditContext(c)), 200),
  );
  app.openapi(
    createRoute({
      method: "post",
      path: "/sessions/{id}/retry",
      tags,
      description:
        "Runs the session's last prompt again as a new turn: the first prompt of a session that failed to start (which starts again on a new harness), otherwise the latest turn's prompt with its model and agent. 409 `conflict` when the session has no prompt yet; 409 `session_busy` while it works.",
      request: { params: SessionParams },
      responses: { 202: json(Session, "Retry started"), ...errors },
    }),
    async (c) => c.json(await s.sessions.retry(c.req.valid("param").id, c.get("principal")), 202),
  );
  app.openapi(
    createRoute({
      method: "post",
      path: "/sessions/{id}/fork",
      tags,
      request: {
        params: SessionParams,
        body: { content: { "application/json": { schema: ForkBody } }, required: false },
      },
      responses: { 201: json(Session, "The new session, sharing the workspace"), ...errors },
    }),
    async (c) => {
      const b = (c.req.valid("json") ?? {}) as { messageId?: string };
      return c.json(await s.sessions.fork(c.req.valid("param").id, b.messageId, c.get("principal")), 201);
    },
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/sessions/{id}/diff",
      tags,
      request: { params: SessionParams },
      responses: {
        200: json(Diff, "Workspace against its base commit, untracked files included"),
        ...errors,
      },
    }),
    async (c) => c.json(await s.sessions.diff(c.req.valid("param").id, c.get("principal")), 200),
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/sessions/{id}/permissions",
      tags,
      request: { params: SessionParams },
      responses: {
        200: json(z.object({ items: z.array(PermissionRequest) }), "Pending permission requests"),
        ...errors,
      },
    }),
    async (c) =>
      c.json({ items: await s.sessions.permissions(c.req.valid("param").id, c.get("principal")) }, 200),
  );
  app.openapi(
    createRoute({
      method: "post",
      path: "/sessions/{id}/permissions/{requestId}",
      tags,
      request: {
        params: SessionParams.extend({ requestId: z.string().min(1).max(200) }),
        ...jsonBody(PermissionReplyBody),
      },
      responses: { 200: json(z.object({ ok: z.literal(true) }), "Answered"), ...errors },
    }),
    async (c) => {
      const { id, requestId } = c.req.valid("param");
      await s.sessions.replyPermission(
        id,
        requestId,
        c.req.valid("json"),
        c.get("principal"),
        auditContext(c),
      );
      return c.json({ ok: true as const }, 200);
    },
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/sessions/{id}/events",
      tags,
      description:
        "With `Accept: text/event-stream`: the stored events after `after` (or `Last-Event-ID`), then live, no gap and no duplicate; each SSE `id` is the event's seq and its `event` name the event's type (but `session.error` for `error`, which browsers' EventSource would take for a failure of the stream). Otherwise a JSON page of stored events.",
      request: { params: SessionParams, query: EventsQuery },
      responses: {
        200: {
          description: "Events",
          content: {
            "application/json": {
              schema: z.object({ items: z.array(SessionEvent), lastSeq: z.number().int() }),
            },
            "text/event-stream": { schema: z.string() },
          },
        },
        ...errors,
      },
    }),
    // biome-ignore lint/suspicious/noExplicitAny: one handler answers two media types
    (async (c: any) => {
      const { id } = c.req.valid("param");
      const q = c.req.valid("query");
      const p = c.get("principal");
      const session = await s.sessions.get(id, p);
      // Last-Event-ID wins over `after`: a browser's EventSource reconnects to its original URL
      // (with its original `after`) and says where it really got to only in this header.
      const lastEventId = Number(c.req.header("last-event-id") ?? Number.NaN);
      const after = Number.isFinite(lastEventId) ? lastEventId : (q.after ?? 0);
      if ((c.req.header("accept") ?? "").includes("text/event-stream"))
        return sessionEventStream(c, s, id, after);
      const items = await s.sessions.events(id, p, after, q.limit);
      return c.json({ items, lastSeq: session.lastSeq }, 200);
    }) as never,
  );
}
