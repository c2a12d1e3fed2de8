import {
  CreatedWebhook,
  CreateWebhookBody,
  DeliveryPage,
  ErrorBody,
  ListDeliveriesQuery,
  Webhook,
  WebhookSecret,
} from "@flotilla/contracts";
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { requireAdmin } from "../../identity/principal.ts";
import { auditContext, type Env, type Services } from "../context.ts";
import { errorResponses, IdParams, json } from "../openapi.ts";

const errors = errorResponses({
  400: "Invalid input",
  401: "No or bad token",
  404: "No such webhook or task",
});
const Params = IdParams;

export function webhookRoutes(app: OpenAPIHono<Env>, s: Services): void {
  const tags = ["webhooks"];
  app.openapi(
    createRoute({
      method: "post",
      path: "/webhooks",
      tags,
      request: { body: { content: { "application/json": { schema: CreateWebhookBody } }, required: true } },
      responses: { 201: json(CreatedWebhook, "Subscribed; the secret is shown only here"), ...errors },
    }),
    async (c) =>
      c.json(await s.webhooks.create(c.req.valid("json"), c.get("principal"), auditContext(c)), 201),
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/webhooks",
      tags,
      responses: {
        200: json(z.object({ items: z.array(Webhook) }), "Subscriptions (never their secrets), newest first"),
        ...errors,
      },
    }),
    async (c) => c.json({ items: await s.webhooks.list(c.get("principal")) }, 200),
  );
  // Registered before /webhooks/{id}/...: `secret` is a fixed segment, not an id.
  app.openapi(
    createRoute({
      method: "get",
      path: "/webhooks/secret",
      tags,
      responses: {
        200: json(WebhookSecret, "Signs deliveries to tasks' own `webhook` URLs; made on first use"),
        403: json(ErrorBody, "Needs admin"),
        ...errors,
      },
    }),
    async (c) => {
      const p = c.get("principal");
      requireAdmin(p);
      return c.json(await s.webhooks.orgSecret(p), 200);
    },
  );
  app.openapi(
    createRoute({
      method: "delete",
      path: "/webhooks/{id}",
      tags,
      request: { params: Params },
      responses: { 200: json(Webhook, "Deleted; its pending deliveries are given up"), ...errors },
    }),
    async (c) =>
      c.json(await s.webhooks.remove(c.req.valid("param").id, c.get("principal"), auditContext(c)), 200),
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/webhooks/{id}/deliveries",
      tags,
      request: { params: Params, query: ListDeliveriesQuery },
      responses: { 200: json(DeliveryPage, "The delivery log, newest first"), ...errors },
    }),
    async (c) =>
      c.json(
        await s.webhooks.deliveries(c.req.valid("param").id, c.req.valid("query"), c.get("principal")),
        200,
      ),
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/tasks/{id}/deliveries",
      tags,
      request: { params: Params, query: ListDeliveriesQuery },
      responses: {
        200: json(DeliveryPage, "Deliveries of this task's events (its own webhook and subscriptions)"),
        ...errors,
      },
    }),
    async (c) =>
      c.json(
        await s.webhooks.taskDeliveries(c.req.valid("param").id, c.req.valid("query"), c.get("principal")),
        200,
      ),
  );
}
