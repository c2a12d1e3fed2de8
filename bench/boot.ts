import { createWriteStream, mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FlotillaClient } from "@flotilla/client";
import type { ScriptedModelServer } from "@flotilla/scripted-model";
import { type Config, createLogger, loadConfig, type RunningServer, startFlotilla } from "@flotilla/server";
import pg from "pg";

/**
 * One npm cache for every harness of every bench run, as a machine in service has one: OpenCode
 * fetches its plugin packages on a harness's first turn, and a one-time download per machine is
 * not a cost of starting a harness.
 */
const NPM_CACHE = join(tmpdir(), "flotilla-bench-npm-cache");

export interface Phase {
  name: string;
  server: RunningServer;
  client: FlotillaClient;
  token: string;
  home: string;
  config: Config;
  close(): Promise<void>;
}

/** Makes an empty database in the bench's Postgres and returns its URL. */
export async function createDatabase(baseUrl: string, name: string): Promise<string> {
  const c = new pg.Client({ connectionString: baseUrl });
  await c.connect();
  try {
    await c.query(`create database ${name}`);
  } finally {
    await c.end();
  }
  const u = new URL(baseUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

/**
 * Each phase gets a control plane of its own (own database, own FLOTILLA_HOME, own pool and
 * scheduler settings), so no phase inherits another's harnesses, shards or queue, and the
 * settings a figure was taken with are exactly the ones printed next to it.
 */
export class Phases {
  private readonly logs: { name: string; file: string }[] = [];

  constructor(
    private readonly root: string,
    private readonly pgUrl: string,
    private readonly model: Pick<ScriptedModelServer, "url">,
  ) {}

  async boot(
    name: string,
    pool: Partial<Config["pool"]>,
    opts: {
      scheduler?: Partial<Config["scheduler"]>;
      harness?: Partial<Config["harness"]>;
      /** Where the phase's harnesses run; unset, the configured default (sandbox). */
      runtime?: Config["runtime"];
      /** The scripted model's endpoint as the harnesses are told it (a tap in front of it, say). */
      modelUrl?: string;
    } = {},
  ): Promise<Phase> {
    const home = join(this.root, name);
    mkdirSync(home, { recursive: true });
    const db = await createDatabase(this.pgUrl, `bench_${name.replaceAll("-", "_")}`);
    const file = join(home, "flotilla.log");
    const stream = createWriteStream(file);
    this.logs.push({ name, file });
    const config = loadConfig({
      env: { FLOTILLA_HOME: home, DATABASE_URL: db, PATH: process.env.PATH, FLOTILLA_NPM_CACHE: NPM_CACHE },
      overrides: {
        port: 0,
        providers: {
          scripted: {
            name: "Scripted",
            baseURL: opts.modelUrl ?? this.model.url,
            models: { "scripted-1": { name: "Scripted", toolCall: true } },
          },
        },
        defaultModel: "scripted/scripted-1",
        permission: "allow",
        demo: "off",
        quiet: true,
        ...(opts.runtime ? { runtime: opts.runtime } : {}),
      },
    });
    config.pool = { ...config.pool, ...pool };
    config.scheduler = { ...config.scheduler, ...opts.scheduler };
    config.harness = { ...config.harness, ...opts.harness };
    let server: RunningServer;
    try {
      server = await startFlotilla(config, createLogger("warn", { destination: stream }));
    } catch (e) {
      stream.end();
      throw e;
    }
    const token = readFileSync(join(home, "admin.token"), "utf8").trim();
    let closed: Promise<void> | undefined;
    return {
      name,
      server,
      home,
      config,
      client: new FlotillaClient({ baseUrl: server.url, token }),
      token,
      // Idempotent: a phase closes itself when done and the run's cleanup closes it again on failure.
      close: () => (closed ??= server.close().finally(() => new Promise<void>((r) => stream.end(() => r())))),
    };
  }

  /** Warn-and-up lines of every phase's server log, one short line each, prefixed with the phase. */
  problems(): string[] {
    return this.logs.flatMap(({ name, file }) => {
      try {
        return readFileSync(file, "utf8")
          .split("\n")
          .filter((l) => l.trim())
          .map((l) => `[${name}] ${brief(l)}`);
      } catch {
        return [];
      }
    });
  }
}

/** A pino line as level, component, message and the error's message (the stack is noise here). */
function brief(line: string): string {
  try {
    const j = JSON.parse(line) as Record<string, unknown>;
    const err = j.err as { message?: string } | undefined;
    const ids = ["harness", "session", "task", "reason"].flatMap((k) => (j[k] ? [`${k}=${j[k]}`] : []));
    return [`level ${j.level}`, j.component, j.msg, err?.message, ids.join(" ")]
      .filter(Boolean)
      .join(" | ")
      .slice(0, 400);
  } catch {
    return line.slice(0, 400);
  }
}

/** Harnesses that hold a process (or are about to). */
export const LIVE = ["starting", "ready", "stopping"];

/** Polls check() until it returns a value; the interval is short next to every measured span. */
export async function poll<T>(
  check: () => Promise<T | undefined>,
  what: string,
  ms: number,
  signal: AbortSignal,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    signal.throwIfAborted();
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
