import { CreateSecretBody, ErrorBody, RotatedMasterKey, SecretInfo } from "@flotilla/contracts";
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { providerKeyNames } from "../../gateway/upstreams.ts";
import { requireAdmin } from "../../identity/principal.ts";
import { adminFor, auditContext, type Env, type Services } from "../context.ts";
import { errorResponses, json } from "../openapi.ts";

const errors = errorResponses({ 400: "Invalid input", 401: "No or bad token", 403: "Needs admin" });

export function secretRoutes(app: OpenAPIHono<Env>, s: Services): void {
  /** A provider key changed (the org's or a project's): the gateway gets it now. */
  const touched = async (name: string) => {
    if (providerKeyNames(s.config).includes(name)) await s.refreshProviderKeys();
  };
  app.openapi(
    createRoute({
      method: "post",
      path: "/secrets",
      tags: ["secrets"],
      description:
        "Stores a secret, encrypted (envelope encryption under the master key). Its value is never returned. The same name and scope again replaces it.",
      request: { body: { content: { "application/json": { schema: CreateSecretBody } }, required: true } },
      responses: { 201: json(SecretInfo, "Stored"), ...errors },
    }),
    async (c) => {
      const p = await adminFor(c, s, "secret.set");
      const body = c.req.valid("json");
      const out = await s.secrets.set(
        p.orgId,
        body.projectId ?? null,
        body.name,
        body.value,
        auditContext(c),
      );
      await touched(out.name);
      return c.json(out, 201);
    },
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/secrets",
      tags: ["secrets"],
      responses: {
        200: json(z.object({ items: z.array(SecretInfo) }), "Secrets: names, scopes, times; never values"),
        ...errors,
      },
    }),
    async (c) => {
      const p = c.get("principal");
      requireAdmin(p);
      return c.json({ items: await s.secrets.list(p.orgId) }, 200);
    },
  );
  app.openapi(
    createRoute({
      method: "delete",
      path: "/secrets/{id}",
      tags: ["secrets"],
      request: { params: z.object({ id: z.string().min(1).max(100) }) },
      responses: { 200: json(SecretInfo, "Deleted"), 404: json(ErrorBody, "No such secret"), ...errors },
    }),
    async (c) => {
      const p = await adminFor(c, s, "secret.delete", { type: "secret", id: c.req.valid("param").id });
      const out = await s.secrets.delete(p.orgId, c.req.valid("param").id, auditContext(c));
      await touched(out.name);
      return c.json(out, 200);
    },
  );
  app.openapi(
    createRoute({
      method: "post",
      path: "/secrets/rotate-master",
      tags: ["secrets"],
      description:
        "A new master key: every secret's data key is re-wrapped with it in one transaction, then the old key is forgotten. Values do not change; nothing running notices.",
      responses: {
        200: json(RotatedMasterKey, "Rotated"),
        409: json(ErrorBody, "The master key comes from the environment"),
        ...errors,
      },
    }),
    async (c) => {
      await adminFor(c, s, "secret.rotate_master");
      return c.json(await s.secrets.rotateMaster(auditContext(c)), 200);
    },
  );
}
