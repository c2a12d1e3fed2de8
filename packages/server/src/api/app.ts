import { ErrorBody, FlotillaError } from "@flotilla/contracts";
import { OpenAPIHono } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import { WebSessionService } from "../identity/web-sessions.ts";
import type { Env, Services } from "./context.ts";
import { errorBody, renderError, validationError } from "./errors.ts";
import { authenticate, isPublicAuthRoute } from "./middleware/auth.ts";
import { inputEdge } from "./middleware/input.ts";
import { requestId } from "./middleware/request-id.ts";
import { traceRequests } from "./middleware/tracing.ts";
import { activityRoutes } from "./routes/activity.ts";
import { auditRoutes } from "./routes/audit.ts";
import { authRoutes } from "./routes/auth.ts";
import { landRoutes } from "./routes/land.ts";
import { metricsRoutes } from "./routes/metrics.ts";
import { overviewRoutes } from "./routes/overview.ts";
import { secretRoutes } from "./routes/secrets.ts";
import { sessionRoutes } from "./routes/sessions.ts";
import { systemRoutes } from "./routes/system.ts";
import { taskRoutes } from "./routes/tasks.ts";
import { terminalRoutes } from "./routes/terminal.ts";
import { tokenRoutes } from "./routes/tokens.ts";
import { usageRoutes } from "./routes/usage.ts";
import { webhookRoutes } from "./routes/webhooks.ts";
import { webUi } from "./web-ui.ts";

// `/metrics` takes its own scrape token (metricsRoutes).
const PUBLIC = new Set(["/healthz", "/readyz", "/openapi.json", "/metrics"]);
const FORGE_HOOK = /^\/forges\/[^/]+\/webhook$/;

export function createApp(s: Services): OpenAPIHono<Env> {
  const app = new OpenAPIHono<Env>({
    defaultHook: (result, c) => {
      if (!result.success) {
        const where = (result as { target?: string }).target ?? "body";
        const e = validationError(result.error, where);
        return c.json(errorBody(e), 400);
      }
    },
  });
  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", { type: "http", scheme: "bearer" });
  app.openAPIRegistry.register("Error", ErrorBody);

  // First: the request's span holds everything below, its log lines and error body included.
  app.use("*", traceRequests());
  app.use("*", requestId());
  app.use("*", async (c, next) => {
    const t0 = performance.now();
    await next();
    // By the route's pattern (`/sessions/:id`), never the path: ids would make a series each.
    const route = c.res.status === 404 && c.req.routePath === "*" ? "(none)" : c.req.routePath;
    s.metrics.httpRequests.inc({ method: c.req.method, route, status: c.res.status });
    s.metrics.httpSeconds.observe({ method: c.req.method, route }, (performance.now() - t0) / 1000);
    s.log.debug(
      {
        method: c.req.method,
        path: c.req.path,
        status: c.res.status,
        ms: Math.round(performance.now() - t0),
      },
      "request",
    );
  });
  app.use(
    "*",
    bodyLimit({
      maxSize: s.config.bodyLimitBytes,
      onError: (c) =>
        c.json(
          errorBody(
            new FlotillaError("body_too_large", `body exceeds ${s.config.bodyLimitBytes} bytes`, {
              field: "body",
            }),
          ),
          413,
        ),
    }),
  );
  app.use("*", inputEdge());
  // Made here, not in Services: browser sessions are an API concern that no core service uses.
  const web = new WebSessionService(s.db);
  app.use("*", webUi(app));
  app.use("*", async (c, next) => {
    // A forge's webhook is authenticated by its signature, checked by its handler.
    if (PUBLIC.has(c.req.path) || isPublicAuthRoute(c) || FORGE_HOOK.test(c.req.path)) return next();
    c.set("principal", await authenticate(c, s, web));
    return next();
  });

  systemRoutes(app, s);
  sessionRoutes(app, s);
  landRoutes(app, s);
  tokenRoutes(app, s);
  taskRoutes(app, s);
  webhookRoutes(app, s);
  authRoutes(app, s, web);
  terminalRoutes(app, s);
  overviewRoutes(app, s);
  activityRoutes(app, s);
  metricsRoutes(app, s);
  usageRoutes(app, s);
  secretRoutes(app, s);
  auditRoutes(app, s);

  app.doc31("/openapi.json", openapiInfo);
  app.notFound((c) =>
    c.json(errorBody(new FlotillaError("not_found", `no route ${c.req.method} ${c.req.path}`)), 404),
  );
  app.onError((err, c) => renderError(err, c, s.log));
  return app;
}

export const openapiInfo = {
  openapi: "3.1.0",
  info: {
    title: "Flotilla API",
    version: "0.1.0",
    description: "Control plane for fleets of coding agents.",
  },
  security: [{ bearer: [] }, { cookie: [] }] as Record<string, string[]>[],
};
