import { z } from "@hono/zod-openapi";
import { ERROR_CODES, type ErrorBodyShape, type Same } from "./light.ts";

/**
 * Every error that crosses the API is one of these codes. The code is the stable contract;
 * the message is for people. `retriable` tells a client whether trying again can help.
 */
export const ErrorCode = z.enum(ERROR_CODES);
export type ErrorCode = z.infer<typeof ErrorCode>;

export const ErrorBody = z
  .object({
    error: z.object({
      code: ErrorCode,
      message: z.string(),
      field: z.string().optional().openapi({ description: "Dotted path of the offending input field" }),
      retriable: z.boolean(),
      reference: z.string().optional().openapi({ description: "Id to quote when reporting a 500" }),
      retryAfterSeconds: z.number().int().nonnegative().optional().openapi({
        description: "rate_limited: try again after this many seconds (also the Retry-After header)",
      }),
      details: z.unknown().optional(),
      traceId: z.string().optional().openapi({
        description:
          "The request's OpenTelemetry trace id, when tracing is on: where to look for what happened",
      }),
    }),
  })
  .openapi("Error");
export type ErrorBody = z.infer<typeof ErrorBody>;

/** FlotillaError lives in light.ts, zod-free, so the browser can have it without zod. */
export { FlotillaError, httpStatusOf } from "./light.ts";

// The zod schema and the light interface must describe the same wire shape.
const _sameBody: Same<ErrorBody, ErrorBodyShape> = true;
void _sameBody;
