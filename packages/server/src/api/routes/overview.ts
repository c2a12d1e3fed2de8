import { Overview } from "@flotilla/contracts";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { readOverview } from "../../metrics/overview.ts";
import type { Env, Services } from "../context.ts";
import { errorResponses, json } from "../openapi.ts";

const errors = errorResponses({ 401: "No or bad token" });

export function overviewRoutes(app: OpenAPIHono<Env>, s: Services): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/overview",
      tags: ["overview"],
      responses: { 200: json(Overview, "The caller's organisation, now and today (UTC)"), ...errors },
    }),
    async (c) => {
      const [o, leftovers] = await Promise.all([
        readOverview(s.db, c.get("principal").orgId),
        s.leftovers.count(),
      ]);
      return c.json({ ...o, leftovers }, 200);
    },
  );
}
