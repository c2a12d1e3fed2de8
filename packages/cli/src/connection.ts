import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { FlotillaClient, FlotillaError } from "@flotilla/client";
import type { Command } from "commander";
import { styleFor } from "./style.ts";

export const DEFAULT_URL = "http://127.0.0.1:7700";

/** Exit codes: 0 done, 1 the server refused or the turn did not succeed, 2 cannot talk to the server, 130 Ctrl-C. */
export const EXIT = { ok: 0, failed: 1, setup: 2, interrupted: 130 } as const;

/** A failure found by the CLI itself (not an API error), with the exit code it deserves. */
export class CliError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly exitCode: number = EXIT.failed,
    readonly details: string[] = [],
  ) {
    super(message);
  }
}

export interface Connection {
  client: FlotillaClient;
  url: string;
  /** For transports the client does not open itself (the terminal's WebSocket). */
  token: string;
}

interface GlobalOptions {
  server?: string;
  token?: string;
}

/** The one place that decides where the server is and which credential to use. */
export function connect(cmd: Command): Connection {
  const o = cmd.optsWithGlobals<GlobalOptions>();
  const url = o.server ?? process.env.FLOTILLA_URL ?? DEFAULT_URL;
  try {
    new URL(url);
  } catch {
    throw new CliError("invalid_url", `--server / FLOTILLA_URL is not a URL: ${url}`, EXIT.setup);
  }
  let token = o.token ?? process.env.FLOTILLA_TOKEN;
  if (!token) {
    const file = join(process.env.FLOTILLA_HOME ?? join(homedir(), ".flotilla"), "admin.token");
    try {
      token = readFileSync(file, "utf8").trim();
    } catch {
      // no file: fall through to the message below
    }
    if (!token) {
      throw new CliError(
        "no_token",
        `no API token: pass --token or set FLOTILLA_TOKEN, or start the server once (\`npm start\`) so it writes ${file}`,
        EXIT.setup,
      );
    }
  }
  return { client: new FlotillaClient({ baseUrl: url, token }), url, token };
}

/** No answer came from the server at all (the client's own error code; its cause is the network error). */
export function isUnreachable(e: unknown): boolean {
  return e instanceof FlotillaError && e.code === "unreachable";
}

function networkCode(e: unknown): string | undefined {
  const inner = (e as { cause?: { cause?: { code?: string; message?: string } } }).cause?.cause;
  return inner?.code ?? inner?.message;
}

export function unreachableMessage(url: string, e?: unknown): string {
  const why = e ? networkCode(e) : undefined;
  return `cannot reach Flotilla at ${url}${why ? ` (${why})` : ""}: start it with \`npm start\` (or \`flotilla server\`), or point --server / FLOTILLA_URL at it`;
}

/** Prints an error as one line (plus hints where they help) and returns the exit code for it. */
export function reportError(e: unknown, url?: string): number {
  const s = styleFor(process.stderr);
  const out = (line: string) => process.stderr.write(`${line}\n`);
  if (e instanceof CliError) {
    // Exit 2 is about reaching the server, not an answer from it: no error code to quote.
    out(`${s.red(e.exitCode === EXIT.setup ? "flotilla" : `error ${e.code}`)}: ${e.message}`);
    for (const d of e.details) out(`  ${d}`);
    return e.exitCode;
  }
  if (isUnreachable(e)) {
    out(`${s.red("flotilla")}: ${unreachableMessage(url ?? DEFAULT_URL, e)}`);
    return EXIT.setup;
  }
  if (e instanceof FlotillaError) {
    out(
      `${s.red(`error ${e.code}`)}: ${e.message}${e.field ? ` (field: ${e.field})` : ""}${e.reference ? ` (reference: ${e.reference})` : ""}`,
    );
    // A full queue (429) says when to come back.
    if (e.retryAfterSeconds !== undefined)
      out(s.dim(`  the server asks to retry after ${e.retryAfterSeconds} s`));
    if (e.code === "unauthorized")
      out(s.dim("  check --token / FLOTILLA_TOKEN, or $FLOTILLA_HOME/admin.token for the local admin"));
    return EXIT.failed;
  }
  out(`${s.red("error")}: ${(e as Error)?.message ?? String(e)}`);
  return EXIT.failed;
}

/**
 * Wraps a command's action: errors become one printed line and an exit code. The process exits
 * here so that a kept-alive HTTP connection or an idle stdin never holds a finished command open.
 */
export function action<A extends unknown[]>(
  fn: (...args: A) => Promise<number | undefined>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    let code: number;
    try {
      code = (await fn(...args)) ?? EXIT.ok;
    } catch (e) {
      const cmd = args.at(-1) as Command | undefined;
      let url: string | undefined;
      try {
        url = cmd?.optsWithGlobals<GlobalOptions>().server ?? process.env.FLOTILLA_URL;
      } catch {
        url = undefined;
      }
      code = reportError(e, url);
    }
    process.exit(code);
  };
}
