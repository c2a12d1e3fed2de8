import { context, trace } from "@opentelemetry/api";
import {
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_URL_PATH,
} from "@opentelemetry/semantic-conventions";
import type { MiddlewareHandler } from "hono";
import {
  contextFromHeaders,
  failSpan,
  SpanKind,
  SpanStatusCode,
  tracer,
  tracingActive,
} from "../../platform/tracing.ts";

/**
 * A server span per API request, the first middleware: everything the request does (its handler,
 * its log lines, its error body, a task it queues) is inside it. An incoming `traceparent` makes it
 * a child of the caller's span. Named by the route's pattern (`POST /tasks/:id/cancel`), never the
 * path, and only a 5xx is an error (a 4xx is the client's, by the HTTP semantic conventions).
 */
export function traceRequests(): MiddlewareHandler {
  return async (c, next) => {
    if (!tracingActive()) return next();
    const parent = contextFromHeaders((k) => c.req.header(k));
    const span = tracer().startSpan(
      c.req.method,
      {
        kind: SpanKind.SERVER,
        attributes: { [ATTR_HTTP_REQUEST_METHOD]: c.req.method, [ATTR_URL_PATH]: c.req.path },
      },
      parent,
    );
    try {
      await context.with(trace.setSpan(parent, span), next);
    } catch (e) {
      failSpan(span, e);
      span.end();
      throw e;
    }
    // The matched route's pattern is known once the request went through the router.
    const route = c.res.status === 404 && c.req.routePath === "*" ? undefined : c.req.routePath;
    if (route) {
      span.updateName(`${c.req.method} ${route}`);
      span.setAttribute(ATTR_HTTP_ROUTE, route);
    }
    span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, c.res.status);
    if (c.res.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  };
}
