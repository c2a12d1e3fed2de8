import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { pathToFileURL } from "node:url";
import type { Config, GatewayLimits } from "../config/config.ts";
import type { Db } from "../platform/db/pool.ts";
import { hostForUrl } from "../platform/http/host.ts";
import type { Logger } from "../platform/logger.ts";
import type { TracingConfig } from "../platform/tracing.ts";
import { processStart, sameProcess, stopGroup } from "../runtime/process.ts";
import { type SerializedUpstream, serializeUpstreams } from "./upstreams.ts";

/** What the gateway process is told on stdin (main.ts). */
export interface GatewaySettings {
  databaseUrl: string;
  host: string;
  port: number;
  upstreams: SerializedUpstream[];
  limits: GatewayLimits;
  controlSecret: string;
  fingerprint: string;
  orphanMs: number;
  logLevel: string;
  logFile: string;
  /** Where its spans go (its environment holds only PATH, so OTEL_* reach it only here). */
  tracing: TracingConfig;
}

const PING_MS = 5_000;
/** Long enough for a control plane to be restarted and adopt its gateway. */
const ORPHAN_MS = 120_000;

/**
 * Runs the model gateway beside the control plane, as a process of its own in its own process
 * group (main.ts), and adopts the one an earlier run of this replica left if it is the same
 * gateway: alive, answering, and started with the same settings (a fingerprint of its providers,
 * keys and database, so a changed key starts a new one). Its pid and address are in `gateways`.
 */
export class GatewaySupervisor {
  private pid: number | null = null;
  private pidStart: string | null = null;
  private url: string | undefined;
  private secret = "";
  private timer: NodeJS.Timeout | undefined;
  private fingerprint = "";
  private respawning = false;
  private stopped = false;

  constructor(
    private readonly db: Db,
    private readonly config: Config,
    private readonly databaseUrl: string,
    private readonly log: Logger,
  ) {}

  /** Starts or adopts the gateway; returns its address (what harnesses are configured with). */
  async start(): Promise<string> {
    const ups = serializeUpstreams(this.config);
    const wantedPort = this.config.gateway.port ?? (this.config.port ? this.config.port + 1 : 0);
    const fingerprint = createHash("sha256")
      .update(
        // Not the keys: a changed key reaches a running gateway (pushUpstreams), no restart needed.
        JSON.stringify({
          ups: ups.map((u) => ({ ...u, key: undefined, projectKeys: undefined })),
          db: this.databaseUrl,
          host: this.config.gateway.host,
          wantedPort,
          limits: this.config.gateway.limits,
          // Where its spans go (the header names, not their values: those may be credentials).
          tracing: [this.config.tracing.endpoint, Object.keys(this.config.tracing.headers ?? {})],
        }),
      )
      .digest("hex");
    this.fingerprint = fingerprint;
    const { rows } = await this.db.query("select * from gateways where replica = $1", [
      this.config.replicaId,
    ]);
    const old = rows[0];
    if (old && sameProcess(old.pid, old.pid_start)) {
      if (old.fingerprint === fingerprint && (await this.answers(old.url, fingerprint))) {
        this.adopt(old.pid, old.pid_start, old.url, old.control_secret);
        await this.pushUpstreams();
        this.log.info({ url: old.url, pid: old.pid }, "model gateway adopted");
        return old.url;
      }
      this.log.info({ pid: old.pid }, "stopping the model gateway of an earlier run (its settings changed)");
      await stopGroup(old.pid, old.pid_start, 5_000);
    }
    let started: { pid: number; url: string; secret: string };
    try {
      started = await this.spawn(ups, fingerprint, wantedPort);
    } catch (e) {
      // The usual port taken by something else: any free one (harnesses adopted from an earlier
      // run cannot reach it; set gateway.port to pin it).
      if (this.config.gateway.port !== undefined || !wantedPort) throw e;
      this.log.warn(
        { port: wantedPort, err: (e as Error).message },
        "the model gateway's usual port is taken",
      );
      started = await this.spawn(ups, fingerprint, 0);
    }
    const pidStart = await this.saveRow(started, fingerprint);
    this.adopt(started.pid, pidStart, started.url, started.secret);
    this.log.info({ url: started.url, pid: started.pid }, "model gateway started");
    return started.url;
  }

  private async saveRow(started: { pid: number; url: string; secret: string }, fingerprint: string) {
    const pidStart = processStart(started.pid);
    await this.db.query(
      `insert into gateways (replica, pid, pid_start, url, fingerprint, control_secret)
       values ($1, $2, $3, $4, $5, $6)
       on conflict (replica) do update set pid = $2, pid_start = $3, url = $4, fingerprint = $5,
         control_secret = $6, started_at = now()`,
      [this.config.replicaId, started.pid, pidStart, started.url, fingerprint, started.secret],
    );
    return pidStart;
  }

  /**
   * The gateway died (a crash, an OOM kill): started again on the same address, which every
   * harness is configured with, so their calls fail only until it is back (OpenCode retries them).
   */
  private async respawn(): Promise<void> {
    if (this.respawning || this.stopped || !this.url) return;
    this.respawning = true;
    try {
      this.log.error({ url: this.url }, "the model gateway died: starting it again at the same address");
      const started = await this.spawn(
        serializeUpstreams(this.config),
        this.fingerprint,
        Number(new URL(this.url).port),
      );
      this.pidStart = await this.saveRow(started, this.fingerprint);
      this.pid = started.pid;
      this.secret = started.secret;
      this.log.info({ url: started.url, pid: started.pid }, "model gateway started again");
    } catch (e) {
      this.log.error({ err: (e as Error).message }, "the model gateway could not be started again; retrying");
    } finally {
      this.respawning = false;
    }
  }

  /** The current providers and keys to the running gateway (after a key changed in the store). */
  async pushUpstreams(): Promise<void> {
    if (!this.url) return;
    const res = await fetch(`${this.url}/_gateway/upstreams`, {
      method: "PUT",
      headers: { "x-flotilla-control": this.secret, "content-type": "application/json" },
      body: JSON.stringify(serializeUpstreams(this.config)),
      signal: AbortSignal.timeout(10_000),
    });
    if (!res.ok) throw new Error(`the model gateway refused its new keys: HTTP ${res.status}`);
  }

  private adopt(pid: number, pidStart: string | null, url: string, secret: string): void {
    this.pid = pid;
    this.pidStart = pidStart;
    this.url = url;
    this.secret = secret;
    this.timer = setInterval(() => void this.ping(), PING_MS);
    this.timer.unref();
    void this.ping();
  }

  private async ping(): Promise<void> {
    if (!this.url) return;
    try {
      await fetch(`${this.url}/_gateway/ping`, {
        method: "POST",
        headers: { "x-flotilla-control": this.secret },
        signal: AbortSignal.timeout(2_000),
      });
    } catch {
      // Slow to answer (a loaded machine) is not gone; gone is a process that is no longer there.
      if (this.pid && !sameProcess(this.pid, this.pidStart)) await this.respawn();
    }
  }

  private async answers(url: string, fingerprint: string): Promise<boolean> {
    try {
      const res = await fetch(`${url}/_gateway/healthz`, { signal: AbortSignal.timeout(2_000) });
      return res.ok && ((await res.json()) as { fingerprint?: string }).fingerprint === fingerprint;
    } catch {
      return false;
    }
  }

  private async spawn(
    ups: GatewaySettings["upstreams"],
    fingerprint: string,
    port: number,
  ): Promise<{ pid: number; url: string; secret: string }> {
    const secret = randomBytes(24).toString("base64url");
    const runDir = join(this.config.home, "run");
    mkdirSync(runDir, { recursive: true, mode: 0o700 });
    const logFile = join(this.config.home, "gateway.log");
    const settings: GatewaySettings = {
      databaseUrl: this.databaseUrl,
      host: this.config.gateway.host,
      port,
      upstreams: ups,
      limits: this.config.gateway.limits,
      controlSecret: secret,
      fingerprint,
      orphanMs: ORPHAN_MS,
      logLevel: this.config.logLevel,
      logFile,
      tracing: this.config.tracing,
    };
    // The sources run through tsx's loader, as the control plane's do (no build step).
    const tsx = pathToFileURL(
      join(dirname(createRequire(import.meta.url).resolve("tsx/package.json")), "dist/loader.mjs"),
    );
    const errFd = openSync(logFile, "a", 0o600);
    const child = spawn(process.execPath, ["--import", tsx.href, join(import.meta.dirname, "main.ts")], {
      cwd: "/",
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      detached: true,
      stdio: ["pipe", errFd, errFd, "pipe"],
    });
    closeSync(errFd);
    const stdin = child.stdin as Writable;
    stdin.on("error", () => {});
    stdin.end(JSON.stringify(settings));
    const ready = child.stdio[3] as Readable;
    const line = await new Promise<string>((resolve, reject) => {
      let buf = "";
      const timer = setTimeout(() => fail(new Error("the model gateway did not start in 60 s")), 60_000);
      const fail = (e: Error) => {
        clearTimeout(timer);
        child.kill("SIGKILL");
        reject(e);
      };
      ready.on("data", (d) => {
        buf += d.toString();
        if (buf.includes("\n")) {
          clearTimeout(timer);
          resolve(buf.split("\n")[0]!);
        }
      });
      child.once("exit", (code) =>
        fail(new Error(`the model gateway exited (${code}) before it listened: see ${logFile}`)),
      );
    });
    ready.destroy();
    child.removeAllListeners("exit");
    child.unref();
    const { port: bound } = JSON.parse(line) as { port: number };
    return { pid: child.pid!, url: `http://${hostForUrl(this.config.gateway.host)}:${bound}`, secret };
  }

  /** The control plane shuts down on purpose: its harnesses stop, and the gateway with them. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    if (!this.pid) return;
    await stopGroup(this.pid, this.pidStart, 5_000);
    await this.db
      .query("delete from gateways where replica = $1 and pid = $2", [this.config.replicaId, this.pid])
      .catch(() => {});
    this.pid = null;
  }
}
