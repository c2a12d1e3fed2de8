import { context, isSpanContextValid, trace } from "@opentelemetry/api";
import pino, { type Logger } from "pino";
import { redactSecrets } from "./redact.ts";

export type { Logger };

// Secrets must never reach a log line, whatever a caller passes in.
const REDACT = [
  "password",
  "token",
  "apiKey",
  "authorization",
  "*.password",
  "*.token",
  "*.apiKey",
  "*.authorization",
  "headers.authorization",
  "req.headers.authorization",
  "env",
  "*.env",
];

/**
 * The active trace's ids on every line written inside a span (platform/tracing.ts), so a line can be
 * found from its trace and a trace from its lines. With tracing off there is never an active span:
 * the lookup finds nothing and the line is unchanged.
 */
function traceIds(): object {
  // A new object each time: pino merges the line's own fields into what the mixin returns.
  const span = trace.getSpan(context.active());
  if (!span) return {};
  const sc = span.spanContext();
  return isSpanContextValid(sc) ? { trace_id: sc.traceId, span_id: sc.spanId } : {};
}

export function createLogger(
  level: string,
  opts: { pretty?: boolean; destination?: pino.DestinationStream } = {},
): Logger {
  const base = {
    level,
    redact: { paths: REDACT, censor: "[redacted]" },
    mixin: traceIds,
    // By value too: a known secret inside any message or field (platform/redact.ts).
    hooks: { streamWrite: redactSecrets },
  };
  if (opts.destination) return pino(base, opts.destination);
  if (opts.pretty) {
    return pino({
      ...base,
      transport: {
        target: "pino-pretty",
        options: { colorize: true, translateTime: "HH:MM:ss.l", ignore: "pid,hostname" },
      },
    });
  }
  return pino(base);
}
