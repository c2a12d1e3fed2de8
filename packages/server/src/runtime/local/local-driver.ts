import { spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "../../platform/db/embedded.ts";
import type { Logger } from "../../platform/logger.ts";
import type {
  AttachSpec,
  ExecResult,
  ExecSpec,
  HarnessRecord,
  HarnessSpec,
  PtyProcess,
  RuntimeDriver,
  ShardStorage,
  StartedHarness,
} from "../driver.ts";
import {
  processStart,
  runProcess,
  sameProcess,
  spawnPty,
  stopGroup,
  tailFile,
  treeRss,
  untilReady,
} from "../process.ts";
import { provisionShard, sandboxEnv } from "../shard-layout.ts";

export { processStart } from "../process.ts";

interface LocalRef {
  pid: number | null;
  pidStart: string | null;
  [k: string]: string | number | null;
}

/**
 * Harnesses as plain child processes of this machine, as the control plane's own user: `opencode
 * serve` in its own process group. No boundary at all: whatever an agent runs can read everything
 * the control plane can. Only for trusted prompts, chosen on purpose (`runtime: local`).
 */
export class LocalDriver implements RuntimeDriver {
  readonly name = "local";
  readonly isolated = false;

  constructor(
    private readonly opencodeBin: string,
    readonly log: Logger,
    /** Shared by all harnesses: OpenCode fetches its plugin packages from npm into HOME's cache on
     * first use; one cache per machine makes that a one-time download instead of one per workspace. */
    private readonly npmCacheDir: string,
    private readonly basePath: string = process.env.PATH ?? "/usr/bin:/bin",
  ) {}

  async provision(shard: ShardStorage): Promise<void> {
    provisionShard(shard);
  }

  private env(shard: ShardStorage, extra: Record<string, string> = {}): Record<string, string> {
    return { ...sandboxEnv(shard, this.basePath), ...extra };
  }

  async start(spec: HarnessSpec): Promise<StartedHarness> {
    await this.provision(spec.shard);
    mkdirSync(spec.runDir, { recursive: true, mode: 0o700 });
    // The password sits in a 0600 file so a restarted control plane can reach an adopted harness.
    writeFileSync(join(spec.runDir, "password"), spec.password, { mode: 0o600 });
    const logPath = join(spec.runDir, "harness.log");
    const logFd = openSync(logPath, "a", 0o600);
    const port = await freePort();
    const env = this.env(spec.shard, { ...spec.env, npm_config_cache: this.npmCacheDir });
    // detached: its own process group, so a stop reaches the agent's children (bash tool runs) and a
    // crash of the control plane does not take the harness with it.
    const child = spawn(this.opencodeBin, ["serve", "--hostname", "127.0.0.1", "--port", String(port)], {
      cwd: join(spec.shard.dir, "cwd"),
      env,
      detached: true,
      stdio: ["ignore", logFd, logFd],
    });
    closeSync(logFd);
    const pid = child.pid ?? null;
    const url = `http://127.0.0.1:${port}`;
    const record: HarnessRecord & { endpoint: string } = {
      harnessId: spec.harnessId,
      driver: this.name,
      ref: { pid, pidStart: pid ? processStart(pid) : null } satisfies LocalRef,
      endpoint: url,
      runDir: spec.runDir,
    };
    return untilReady(child, record, spec, this);
  }

  private ref(record: HarnessRecord): LocalRef {
    return record.ref as LocalRef;
  }

  async stop(record: HarnessRecord, graceMs: number): Promise<void> {
    const r = this.ref(record);
    await stopGroup(r.pid, r.pidStart, graceMs);
  }

  async inspect(record: HarnessRecord): Promise<"running" | "gone"> {
    const r = this.ref(record);
    return sameProcess(r.pid, r.pidStart) ? "running" : "gone";
  }

  async stats(record: HarnessRecord): Promise<{ rssBytes: number }> {
    const r = this.ref(record);
    return { rssBytes: r.pid ? await treeRss(r.pid) : 0 };
  }

  logs(record: HarnessRecord, maxBytes = 64 * 1024): Promise<string> {
    return tailFile(join(record.runDir, "harness.log"), maxBytes);
  }

  exec(spec: ExecSpec): Promise<ExecResult> {
    const [file, ...args] = spec.command;
    return runProcess(file!, args, { ...spec, cwd: spec.cwd, env: this.env(spec.shard, spec.env) });
  }

  attach(spec: AttachSpec): PtyProcess {
    const [file, ...args] = spec.command;
    return spawnPty(file!, args, {
      cwd: spec.cwd,
      env: this.env(spec.shard, { TERM: "xterm-256color", ...(spec.env ?? {}) }),
      cols: spec.cols,
      rows: spec.rows,
    });
  }
}
