import { type ErrorBodyShape, FlotillaError, newId } from "@flotilla/contracts";
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ZodError } from "zod";
import { isConnectionError } from "../platform/db/health.ts";
import type { Logger } from "../platform/logger.ts";
import { activeTraceIds } from "../platform/tracing.ts";

/** An error's body as the API sends it: with the request's trace id when tracing is on. */
export function errorBody(e: FlotillaError, reference?: string): ErrorBodyShape {
  const body = e.toBody(reference);
  const ids = activeTraceIds();
  if (ids) body.error.traceId = ids.traceId;
  return body;
}

export function validationError(error: ZodError, where: "body" | "query" | "param" | string): FlotillaError {
  const issue = error.issues[0];
  const path = issue?.path.join(".") ?? "";
  const field = path || (where === "body" ? "body" : where);
  let message = issue?.message ?? "invalid input";
  if (issue?.code === "unrecognized_keys")
    message = `unknown field(s): ${(issue as { keys: string[] }).keys.join(", ")}`;
  return new FlotillaError("invalid_request", `${field}: ${message}`, {
    field: issue?.code === "unrecognized_keys" ? (issue as { keys: string[] }).keys[0] : field,
  });
}

/** The one place errors become responses: typed errors as themselves, anything else a 500 with a reference. */
export function renderError(err: unknown, c: Context, log: Logger): Response {
  if (err instanceof FlotillaError) {
    if (err.retryAfterSeconds !== undefined) c.header("Retry-After", String(err.retryAfterSeconds));
    return c.json(errorBody(err), err.status as 400);
  }
  if (err instanceof HTTPException) {
    const msg = err.message;
    const code =
      err.status === 413
        ? "body_too_large"
        : /Malformed JSON/.test(msg)
          ? "invalid_json"
          : err.status === 415
            ? "invalid_request"
            : err.status === 404
              ? "not_found"
              : "invalid_request";
    const e = new FlotillaError(
      code,
      code === "invalid_request" && err.status === 415
        ? "send a JSON body with Content-Type: application/json"
        : msg || "bad request",
      { field: err.status === 404 ? undefined : "body" },
    );
    return c.json(errorBody(e), e.status as 400);
  }
  if (isConnectionError(err)) {
    // The database is away (a restart, a failover): the control plane waits for it, so does the caller.
    const e = new FlotillaError("database_unavailable", "the database is unavailable; try again shortly", {
      retryAfterSeconds: 2,
    });
    c.header("Retry-After", "2");
    return c.json(errorBody(e), 503);
  }
  const reference = newId("err");
  log.error({ err, reference, path: c.req.path, method: c.req.method }, "unhandled error");
  return c.json(
    errorBody(
      new FlotillaError("internal", "internal error; quote the reference when reporting it"),
      reference,
    ),
    500,
  );
}
