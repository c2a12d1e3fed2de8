import { FlotillaError } from "@flotilla/contracts";
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { sameToken } from "../../metrics/prometheus.ts";
import type { Env, Services } from "../context.ts";
import { errorResponses } from "../openapi.ts";

export function metricsRoutes(app: OpenAPIHono<Env>, s: Services): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/metrics",
      tags: ["system"],
      description:
        "Prometheus metrics (text exposition format). Authenticated by the scrape token (`Authorization: Bearer`), not an API token: FLOTILLA_METRICS_TOKEN, else $FLOTILLA_HOME/metrics.token.",
      security: [{ bearer: [] }],
      responses: {
        200: { content: { "text/plain": { schema: z.string() } }, description: "The metrics" },
        ...errorResponses({ 401: "No or bad scrape token" }),
      },
    }),
    async (c) => {
      const auth = c.req.header("authorization") ?? "";
      const token = auth.toLowerCase().startsWith("bearer ") ? auth.slice(7).trim() : "";
      if (!token || !sameToken(token, s.metricsToken))
        throw new FlotillaError(
          "unauthorized",
          "/metrics takes the scrape token (see $FLOTILLA_HOME/metrics.token)",
        );
      const { body, contentType } = await s.metrics.scrape();
      return c.text(body, 200, { "content-type": contentType });
    },
  );
}
