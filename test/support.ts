import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { FlotillaClient, type SessionEvent } from "@flotilla/client";
import { type Scenario, type ScriptedModelServer, startScriptedModel } from "@flotilla/scripted-model";
import { type Config, createLogger, loadConfig, type RunningServer, startFlotilla } from "@flotilla/server";
import pg from "pg";
import { inject } from "vitest";

export const ROOT = resolve(import.meta.dirname, "..");
/**
 * One scale factor for every deadline a test sets: 1 on a quiet machine; raise FLOTILLA_TEST_SCALE
 * on a loaded one (deadlines are safety nets; tests wait on events, never on time). `waitFor` and
 * `collectUntil` scale the deadlines they are given; vitest.config.ts scales the per-test ones.
 */
export const SCALE = Math.max(1, Number(process.env.FLOTILLA_TEST_SCALE ?? 1) || 1);
export const deadline = (ms: number) => Math.round(ms * SCALE);
export const MODEL = "scripted/scripted-1";
/** One npm cache for every harness of a test run: OpenCode's plugin download happens once. */
export const SHARED_NPM_CACHE = join(tmpdir(), "flotilla-test-npm-cache");

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `flotilla-${prefix}-`));
}

/** A fresh database in the run's shared Postgres. */
export async function createTestDb(): Promise<string> {
  const base = inject("pgUrl");
  const name = `t_${randomBytes(6).toString("hex")}`;
  const c = new pg.Client({ connectionString: base });
  await c.connect();
  await c.query(`create database ${name}`);
  await c.end();
  const u = new URL(base);
  u.pathname = `/${name}`;
  return u.toString();
}

const gitEnv = {
  GIT_AUTHOR_NAME: "test",
  GIT_AUTHOR_EMAIL: "test@example.invalid",
  GIT_COMMITTER_NAME: "test",
  GIT_COMMITTER_EMAIL: "test@example.invalid",
};

/** A real git repository with one commit. */
export function makeRepo(files: Record<string, string> = { "README.md": "# scratch\n" }): string {
  const dir = tempDir("repo");
  for (const [p, c] of Object.entries(files)) {
    mkdirSync(join(dir, p, ".."), { recursive: true });
    writeFileSync(join(dir, p), c);
  }
  const git = (...args: string[]) =>
    execFileSync("git", args, { cwd: dir, env: { ...process.env, ...gitEnv }, stdio: "ignore" });
  git("init", "-q", "-b", "main");
  git("add", ".");
  git("commit", "-q", "-m", "init");
  return dir;
}

export interface TestServer {
  url: string;
  token: string;
  client: FlotillaClient;
  home: string;
  model: ScriptedModelServer;
  server: RunningServer;
  logFile: string;
  db: string;
  /** The configuration it runs with: a change takes effect at `restart()`. */
  config: Config;
  /** A graceful restart of the control plane on the same home and database (a new port: url and
   * client change). Its harnesses stop with it; the next one starts new harnesses. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export function scriptedProvider(model: ScriptedModelServer) {
  return {
    scripted: {
      name: "Scripted",
      baseURL: model.url,
      models: { "scripted-1": { name: "Scripted", toolCall: true } },
    },
  };
}

/** The loopback addresses and names, as an egress allow-list. */
export const LOOPBACK_ALLOW = ["127.0.0.0/8", "::1/128", "localhost"];

/** A real control plane in this process: its own database, home and scripted model. */
export async function startTestServer(opts: {
  scenario: Scenario;
  config?: Partial<Config>;
  scheduler?: Partial<Config["scheduler"]>;
  pool?: Partial<Config["pool"]>;
  webhooks?: Partial<Config["webhooks"]>;
  /**
   * The database: by default a fresh one in the run's shared Postgres; a URL; or "embedded": none
   * given, so the control plane runs its own Postgres in its home (`db` is then "").
   */
  database?: string;
}): Promise<TestServer> {
  const home = tempDir("home");
  const db = opts.database === "embedded" ? "" : (opts.database ?? (await createTestDb()));
  const model = await startScriptedModel({ scenario: opts.scenario });
  const config = loadConfig({
    env: {
      FLOTILLA_HOME: home,
      ...(db ? { DATABASE_URL: db } : {}),
      PATH: process.env.PATH,
      FLOTILLA_NPM_CACHE: SHARED_NPM_CACHE,
    },
    overrides: {
      port: 0,
      providers: scriptedProvider(model),
      defaultModel: MODEL,
      permission: "allow",
      demo: "off",
      quiet: true,
      // Tests' receivers, forges and git servers listen on loopback, which the egress policy
      // refuses by default: allowed here unless a test sets `egress` itself (ssrf.test.ts).
      egress: { allow: LOOPBACK_ALLOW },
      ...opts.config,
    },
  });
  config.scheduler = { ...config.scheduler, backoffBaseMs: 200, ...opts.scheduler };
  config.webhooks = { ...config.webhooks, backoffBaseMs: 200, ...opts.webhooks };
  // A test machine is often loaded (two test files at once, each with harnesses): a generous start.
  config.harness = { ...config.harness, readyTimeoutMs: deadline(120_000), ...opts.config?.harness };
  // No warm harnesses unless a test asks: each is an idle OpenCode server's worth of memory.
  // No warm workspaces either: each is a checkout and a directory set up that a test may never use.
  config.pool = { ...config.pool, warm: 0, warmWorkspaces: 0, ...opts.pool };
  const logFile = join(home, "flotilla.log");
  const log = createLogger("debug", { destination: createWriteStream(logFile) });
  const server = await startFlotilla(config, log);
  const token = readFileSync(join(home, "admin.token"), "utf8").trim();
  const t: TestServer = {
    url: server.url,
    token,
    client: new FlotillaClient({ baseUrl: server.url, token }),
    home,
    model,
    server,
    logFile,
    db,
    config,
    restart: async () => {
      await t.server.close();
      t.server = await startFlotilla(config, log);
      t.url = t.server.url;
      t.client = new FlotillaClient({ baseUrl: t.url, token });
    },
    close: async () => {
      await t.server.close();
      await model.close();
      rmSync(home, { recursive: true, force: true });
    },
  };
  return t;
}

/** Collects a session's events from the SSE stream until `until` says stop (or the deadline passes). */
export async function collectUntil(
  client: FlotillaClient,
  sessionId: string,
  until: (e: SessionEvent, all: SessionEvent[]) => boolean,
  opts: { after?: number; timeoutMs?: number } = {},
): Promise<SessionEvent[]> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), deadline(opts.timeoutMs ?? 60_000));
  const all: SessionEvent[] = [];
  try {
    for await (const e of client.sessions.stream(sessionId, { after: opts.after ?? 0, signal: ac.signal })) {
      all.push(e);
      if (until(e, all)) return all;
    }
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
  throw new Error(
    `timed out waiting on session ${sessionId}; saw: ${all.map((e) => e.type + (e.type === "session.status" ? `:${e.data.status}` : "")).join(", ")}`,
  );
}

/**
 * Waits for the end of the n-th turn (1-based): its turn.finished and the session.status written
 * with it in the same transaction. Returns every event up to there.
 */
export function untilTurnFinished(n = 1) {
  return (e: SessionEvent, all: SessionEvent[]) =>
    e.type === "session.status" &&
    all.at(-2)?.type === "turn.finished" &&
    all.filter((x) => x.type === "turn.finished").length >= n;
}

export function assertGapFree(events: SessionEvent[], from = 1): void {
  events.forEach((e, i) => {
    if (e.seq !== from + i)
      throw new Error(`gap or duplicate at index ${i}: expected seq ${from + i}, got ${e.seq}`);
  });
}

/** Runs `node bin/flotilla.mjs ...args` as a child process, for tests that kill it. */
export function spawnFlotilla(args: string[], env: Record<string, string>, logFile: string): ChildProcess {
  const out = createWriteStream(logFile, { flags: "a" });
  const child = spawn(process.execPath, [join(ROOT, "bin/flotilla.mjs"), ...args], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/root",
      FLOTILLA_LOG_JSON: "1",
      FLOTILLA_NPM_CACHE: SHARED_NPM_CACHE,
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  return child;
}

export async function waitFor<T>(
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 60_000,
  what = "condition",
): Promise<T> {
  const end = Date.now() + deadline(timeoutMs);
  let lastErr: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${lastErr ? `: ${(lastErr as Error).message}` : ""}`);
}
