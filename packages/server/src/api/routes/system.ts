import { Catalog, Harness } from "@flotilla/contracts";
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
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
        503: json(
          z.object({ ready: z.boolean(), reason: z.string().optional() }),
          "Not ready: starting, stopping, or the database is away (the reason says which)",
        ),
      },
    }),
    async (c) => {
      if (!s.isReady()) return c.json({ ready: false, reason: "starting or stopping" }, 503);
      const away = s.dbHealth?.status();
      if (away)
        return c.json(
          { ready: false, reason: `database unavailable since ${away.since.toISOString()}: ${away.reason}` },
          503,
        );
      const err = await s.db.query("select 1").then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      if (err) {
        s.dbHealth?.report(err);
        return c.json({ ready: false, reason: `database unavailable: ${err.message}` }, 503);
      }
      return c.json({ ready: true }, 200);
    },
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/models",
      tags: ["models"],
      description:
        "The models a harness offers. A harness that takes more than 2 s to answer is not waited for: the last list a harness gave is returned (or, before any has answered, the configured one).",
      responses: { 200: json(Catalog, "Provider/model catalog") },
    }),
    async (c) => c.json(await s.models.get(), 200),
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
