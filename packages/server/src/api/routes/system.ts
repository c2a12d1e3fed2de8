import { Catalog, Harness } from "@flotilla/contracts";
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { catalog } from "../../agents/opencode/catalog.ts";
import type { Env, Services } from "../context.ts";
import { json } from "../openapi.ts";

export function systemRoutes(app: OpenAPIHono<Env>, s: Services): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/healthz",
      security: [],
      responses: { 200: json(z.object({ ok: z.boolean() }), "Process is up") },
    }),
    (c) => c.json({ ok: true }, 200),
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/readyz",
      security: [],
      responses: {
        200: json(z.object({ ready: z.boolean() }), "Ready"),
        503: json(z.object({ ready: z.boolean() }), "Not ready"),
      },
    }),
    async (c) => {
      const ok =
        s.isReady() &&
        (await s.db.query("select 1").then(
          () => true,
          () => false,
        ));
      return ok ? c.json({ ready: true }, 200) : c.json({ ready: false }, 503);
    },
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/models",
      tags: ["models"],
      responses: { 200: json(Catalog, "Provider/model catalog") },
    }),
    async (c) => c.json(await catalog(s.config, s.harnesses, s.demoProvider), 200),
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/harnesses",
      tags: ["harnesses"],
      responses: {
        200: json(
          z.object({ items: z.array(Harness) }),
          "The caller's org's harnesses and the warm ones not yet given to an org, newest first",
        ),
      },
    }),
    async (c) => c.json({ items: await s.harnesses.list(c.get("principal").orgId) }, 200),
  );
}
