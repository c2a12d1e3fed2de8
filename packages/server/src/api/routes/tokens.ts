import { CreatedToken, CreateTokenBody, ErrorBody, TokenInfo } from "@flotilla/contracts";
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { requireAdmin } from "../../identity/principal.ts";
import { adminFor, auditContext, type Env, type Services } from "../context.ts";
import { errorResponses, json } from "../openapi.ts";

const errors = errorResponses({
  400: "Invalid input",
  401: "No or bad token",
  403: "Needs admin",
});

export function tokenRoutes(app: OpenAPIHono<Env>, s: Services): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/tokens",
      tags: ["tokens"],
      request: { body: { content: { "application/json": { schema: CreateTokenBody } }, required: true } },
      responses: { 201: json(CreatedToken, "Created; the token is shown only here"), ...errors },
    }),
    async (c) => {
      const p = await adminFor(c, s, "token.create");
      const body = c.req.valid("json");
      return c.json(await s.tokens.create(p.orgId, body.name, body.role, auditContext(c)), 201);
    },
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/tokens",
      tags: ["tokens"],
      responses: {
        200: json(z.object({ items: z.array(TokenInfo) }), "Tokens (never their secrets)"),
        ...errors,
      },
    }),
    async (c) => {
      const p = c.get("principal");
      requireAdmin(p);
      return c.json({ items: await s.tokens.list(p) }, 200);
    },
  );
  app.openapi(
    createRoute({
      method: "delete",
      path: "/tokens/{id}",
      tags: ["tokens"],
      request: { params: z.object({ id: z.string().min(1).max(100) }) },
      responses: { 200: json(TokenInfo, "Revoked"), 404: json(ErrorBody, "No such token"), ...errors },
    }),
    async (c) => {
      const id = c.req.valid("param").id;
      const p = await adminFor(c, s, "token.revoke", { type: "token", id });
      return c.json(await s.tokens.revoke(id, p, auditContext(c)), 200);
    },
  );
}
