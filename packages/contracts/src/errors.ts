import { z } from "@hono/zod-openapi";

/**
 * Every error that crosses the API is one of these codes. The code is the stable contract;
 * the message is for people. `retriable` tells a client whether trying again can help.
 */
export const ErrorCode = z.enum([
  "invalid_request",
  "invalid_json",
  "body_too_large",
  "unauthorized",
  "forbidden",
  "not_found",
  "conflict",
  "repo_not_found",
  "repo_not_git",
  "repo_clone_failed",
  "harness_unavailable",
  "harness_error",
  "session_busy",
  "session_not_resumable",
  "rate_limited",
  "internal",
]);
export type ErrorCode = z.infer<typeof ErrorCode>;

export const ErrorBody = z
  .object({
    error: z.object({
      code: ErrorCode,
      message: z.string(),
      field: z.string().optional().openapi({ description: "Dotted path of the offending input field" }),
      retriable: z.boolean(),
      reference: z.string().optional().openapi({ description: "Id to quote when reporting a 500" }),
      details: z.unknown().optional(),
    }),
  })
  .openapi("Error");
export type ErrorBody = z.infer<typeof ErrorBody>;

const STATUS = {
  invalid_request: 400,
  invalid_json: 400,
  body_too_large: 413,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  repo_not_found: 422,
  repo_not_git: 422,
  repo_clone_failed: 422,
  harness_unavailable: 503,
  harness_error: 502,
  session_busy: 409,
  session_not_resumable: 409,
  rate_limited: 429,
  internal: 500,
} as const satisfies Record<ErrorCode, number>;

const RETRIABLE: Partial<Record<ErrorCode, boolean>> = {
  harness_unavailable: true,
  harness_error: true,
  rate_limited: true,
  session_busy: true,
  internal: true,
};

/** A typed, serializable error. Thrown anywhere below the routes; rendered once by the server. */
export class FlotillaError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly field?: string;
  readonly retriable: boolean;
  readonly details?: unknown;
  constructor(
    code: ErrorCode,
    message: string,
    opts: { field?: string; details?: unknown; cause?: unknown } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = "FlotillaError";
    this.code = code;
    this.status = STATUS[code];
    this.field = opts.field;
    this.retriable = RETRIABLE[code] ?? false;
    this.details = opts.details;
  }
  toBody(reference?: string): ErrorBody {
    return {
      error: {
        code: this.code,
        message: this.message,
        retriable: this.retriable,
        ...(this.field ? { field: this.field } : {}),
        ...(reference ? { reference } : {}),
        ...(this.details !== undefined ? { details: this.details } : {}),
      },
    };
  }
  static fromBody(status: number, body: ErrorBody): FlotillaError {
    const e = new FlotillaError(body.error.code, body.error.message, {
      field: body.error.field,
      details: body.error.details,
    });
    (e as { status: number }).status = status;
    return e;
  }
}

export const httpStatusOf = (code: ErrorCode): number => STATUS[code];
