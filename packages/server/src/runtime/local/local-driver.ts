import { spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { open, readdir } from "node:fs/promises";
import { join } from "node:path";
import { healthy } from "../../agents/opencode/health.ts";
import { freePort } from "../../platform/db/embedded.ts";
import type { Logger } from "../../platform/logger.ts";
import {
  type HarnessRecord,
  type HarnessSpec,
  HarnessStartError,
  type RuntimeDriver,
  type StartedHarness,
} from "../driver.ts";

/** Start time of a process in clock ticks since boot: with the pid, identifies it across pid reuse. */
export function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 2 (comm) may hold spaces and parens; fields after the last ')' are plain.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return rest[19] ?? null; // field 22 overall
  } catch {
    return null;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Harnesses as child processes of this machine: `opencode serve` in its own process group. */
export class LocalDriver implements RuntimeDriver {
  readonly name = "local";

  constructor(
    private readonly opencodeBin: string,
    readonly log: Logger,
    /** Shared by all harnesses: OpenCode fetches its plugin packages from npm into HOME's cache on
     * first use; one cache per machine makes that a one-time download instead of one per workspace. */
    private readonly npmCacheDir: string,
    private readonly basePath: string = process.env.PATH ?? "/usr/bin:/bin",
  ) {}

  async start(spec: HarnessSpec): Promise<StartedHarness> {
    mkdirSync(spec.runDir, { recursive: true, mode: 0o700 });
    for (const d of ["data", "config", "state", "cache", "home"])
      mkdirSync(join(spec.stateDir, d), { recursive: true });
    // The password sits in a 0600 file so a restarted control plane can reach an adopted harness.
    writeFileSync(join(spec.runDir, "password"), spec.password, { mode: 0o600 });
    const logPath = join(spec.runDir, "harness.log");
    const logFd = openSync(logPath, "a", 0o600);
    const port = await freePort();
    const env: Record<string, string> = {
      PATH: this.basePath,
      HOME: join(spec.stateDir, "home"),
      XDG_DATA_HOME: join(spec.stateDir, "data"),
      XDG_CONFIG_HOME: join(spec.stateDir, "config"),
      XDG_STATE_HOME: join(spec.stateDir, "state"),
      XDG_CACHE_HOME: join(spec.stateDir, "cache"),
      OPENCODE_SERVER_PASSWORD: spec.password,
      OPENCODE_DISABLE_AUTOUPDATE: "1",
      OPENCODE_DISABLE_MODELS_FETCH: "1",
      OPENCODE_DISABLE_LSP_DOWNLOAD: "1",
      OPENCODE_DISABLE_DEFAULT_PLUGINS: "1",
      GIT_TERMINAL_PROMPT: "0",
      npm_config_cache: this.npmCacheDir,
      ...spec.env,
    };
    // detached: its own process group, so a stop reaches the agent's children (bash tool runs) and a
    // crash of the control plane does not take the harness with it.
    const child = spawn(this.opencodeBin, ["serve", "--hostname", "127.0.0.1", "--port", String(port)], {
      cwd: spec.workspacePath,
      env,
      detached: true,
      stdio: ["ignore", logFd, logFd],
    });
    closeSync(logFd);
    const exited = new Promise<{ code: number | null; signal: string | null }>((res) =>
      child.once("exit", (code, signal) => res({ code, signal })),
    );
    const spawnError = new Promise<Error>((res) => child.once("error", res));
    child.unref();
    const pid = child.pid;
    const url = `http://127.0.0.1:${port}`;
    const record = {
      harnessId: spec.harnessId,
      pid: pid ?? null,
      pidStart: pid ? processStart(pid) : null,
      url,
      runDir: spec.runDir,
    };
    await spec.onSpawn?.(record);
    let gone: string | undefined;
    void exited.then((x) => {
      gone = `exited with ${x.signal ?? x.code}`;
    });
    void spawnError.then((e) => {
      gone = e.message;
    });
    // Early requests can hang (OPENCODE.md): poll with short timeouts rather than one long request.
    const deadline = Date.now() + spec.readyTimeoutMs;
    while (Date.now() < deadline && !gone) {
      if (await healthy(url, spec.password)) return { ...record, exited };
      await sleep(100);
    }
    const tail = await this.logs(record, 4000);
    await this.stop(record, 1000);
    throw new HarnessStartError(
      gone ? `harness ${gone} before it was ready` : "harness not ready in time",
      tail,
    );
  }

  async stop(record: HarnessRecord, graceMs: number): Promise<void> {
    if (!record.pid || (await this.inspect(record)) === "gone") return;
    const group = -record.pid;
    try {
      process.kill(group, "SIGTERM");
    } catch {
      return;
    }
    const end = Date.now() + graceMs;
    while (Date.now() < end) {
      if ((await this.inspect(record)) === "gone") break;
      await sleep(50);
    }
    // The group may hold stray children even when the leader left; SIGKILL them all.
    try {
      process.kill(group, "SIGKILL");
    } catch {}
    const killEnd = Date.now() + 5000;
    while (Date.now() < killEnd && (await this.inspect(record)) === "running") await sleep(20);
  }

  async inspect(record: HarnessRecord): Promise<"running" | "gone"> {
    if (!record.pid) return "gone";
    const start = processStart(record.pid);
    if (start === null || start !== record.pidStart) return "gone";
    // A zombie still has a /proc entry; it is gone for our purposes.
    try {
      const state = readFileSync(`/proc/${record.pid}/stat`, "utf8");
      if (state.slice(state.lastIndexOf(")") + 2).startsWith("Z")) return "gone";
    } catch {
      return "gone";
    }
    return "running";
  }

  async stats(record: HarnessRecord): Promise<{ rssBytes: number }> {
    if (!record.pid) return { rssBytes: 0 };
    let rssBytes = 0;
    // The agent's tools run as children in the same process group; count them with the server.
    for (const entry of await readdir("/proc").catch(() => [] as string[])) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
        const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        if (Number(fields[2]) !== record.pid) continue; // field 5: process group
        rssBytes += Number(fields[21]) * 4096; // field 24: rss in pages
      } catch {}
    }
    return { rssBytes };
  }

  async logs(record: HarnessRecord, maxBytes = 64 * 1024): Promise<string> {
    const path = join(record.runDir, "harness.log");
    try {
      const size = statSync(path).size;
      const fh = await open(path, "r");
      try {
        const len = Math.min(size, maxBytes);
        const buf = Buffer.alloc(len);
        await fh.read(buf, 0, len, size - len);
        return buf.toString("utf8");
      } finally {
        await fh.close();
      }
    } catch {
      return "";
    }
  }
}
