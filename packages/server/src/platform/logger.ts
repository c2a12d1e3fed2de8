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

export function createLogger(
  level: string,
  opts: { pretty?: boolean; destination?: pino.DestinationStream } = {},
): Logger {
  const base = {
    level,
    redact: { paths: REDACT, censor: "[redacted]" },
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
