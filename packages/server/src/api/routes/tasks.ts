import { CreateTaskBody, ListTasksQuery, Task, TaskPage } from "@flotilla/contracts";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { auditContext, type Env, type Services } from "../context.ts";
import { errorResponses, IdParams, json } from "../openapi.ts";

const errors = errorResponses({
  400: "Invalid input",
  401: "No or bad token",
  404: "No such task",
  409: "Not in a state that allows this",
  422: "Repository missing or not git",
  429: "Queue full: try again after Retry-After seconds",
});
const Params = IdParams;

export function taskRoutes(app: OpenAPIHono<Env>, s: Services): void {
  const tags = ["tasks"];
  app.openapi(
    createRoute({
      method: "post",
      path: "/tasks",
      tags,
      request: { body: { content: { "application/json": { schema: CreateTaskBody } }, required: true } },
      responses: {
        201: json(Task, "Queued"),
        200: json(Task, "Same idempotency key: the existing task"),
        ...errors,
      },
    }),
    async (c) => {
      const { task, created } = await s.tasks.submit(
        c.req.valid("json"),
        c.get("principal"),
        auditContext(c),
      );
      return created ? c.json(task, 201) : c.json(task, 200);
    },
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/tasks",
      tags,
      request: { query: ListTasksQuery },
      responses: { 200: json(TaskPage, "Newest first"), ...errors },
    }),
    async (c) => c.json(await s.tasks.list(c.req.valid("query"), c.get("principal")), 200),
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/tasks/{id}",
      tags,
      request: { params: Params },
      responses: { 200: json(Task, "With its history and attempts"), ...errors },
    }),
    async (c) => c.json(await s.tasks.get(c.req.valid("param").id, c.get("principal")), 200),
  );
  app.openapi(
    createRoute({
      method: "post",
      path: "/tasks/{id}/cancel",
      tags,
      request: { params: Params },
      responses: {
        200: json(Task, "Cancelled, or cancelling (a running task's session is aborted)"),
        ...errors,
      },
    }),
    async (c) =>
      c.json(await s.tasks.cancel(c.req.valid("param").id, c.get("principal"), auditContext(c)), 200),
  );
  app.openapi(
    createRoute({
      method: "post",
      path: "/tasks/{id}/retry",
      tags,
      request: { params: Params },
      responses: { 200: json(Task, "Queued again"), ...errors },
    }),
    async (c) =>
      c.json(await s.tasks.retry(c.req.valid("param").id, c.get("principal"), auditContext(c)), 200),
  );
}
