import { execFile, spawn } from "node:child_process";
import {
  chmodSync,
  chownSync,
  closeSync,
  mkdirSync,
  openSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import type { Writable } from "node:stream";
import { promisify } from "node:util";
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
import { bwrapArgs, type HostFacts, type SandboxSpec, shq } from "./args.ts";
import { hostFacts, sandboxTools } from "./host.ts";

const run = promisify(execFile);

/** Inside the sandbox, the bridges' sockets live here (the harness's own run dir, bound). */
const BRIDGE_DIR = "/run/flotilla";

interface SandboxRef {
  pid: number | null;
  pidStart: string | null;
  [k: string]: string | number | null;
}

/**
 * Where the host side of a harness's bridges lives: its run dir, unless that makes a socket path
 * longer than a Unix socket address holds (108 bytes, `sun_path`; a long FLOTILLA_HOME), then a
 * short directory of its own under /tmp.
 */
export function bridgeDir(runDir: string, harnessId: string): string {
  const inRun = join(runDir, "bridges");
  return join(inRun, "egress-65535.sock").length < 100
    ? inRun
    : join(tmpdir(), "flotilla-bridges", harnessId);
}

/** A loopback endpoint the agent may reach under `allowlist`, bridged into its network namespace. */
export function loopbackPort(url: string): number | null {
  try {
    const u = new URL(url);
    if (!["127.0.0.1", "localhost", "[::1]"].includes(u.hostname)) return null;
    return Number(u.port || (u.protocol === "https:" ? 443 : 80));
  } catch {
    return null;
  }
}

/**
 * Harnesses in bubblewrap sandboxes on this machine, the default runtime. Each harness sees a
 * read-only system, its own shard (state and workspaces) and nothing else of Flotilla's data; it runs
 * as an unprivileged user with a scrubbed environment, in its own PID, IPC and (unless the policy is
 * `open`) network namespace. With its own network namespace, the harness's API and each allowed
 * endpoint cross the boundary through Unix sockets bridged by socat on both sides; the host-side
 * bridges run in the harness's process group, so they outlive a control-plane restart with it.
 * Execs (git, verify) and terminals run in fresh sandboxes over the same shard.
 */
export class SandboxDriver implements RuntimeDriver {
  readonly name = "sandbox";
  readonly isolated = true;
  private readonly host: HostFacts;
  private readonly tools: { bwrap: string; socat: string };
  private readonly opencodeBin: string;

  constructor(
    opencodeBin: string,
    readonly log: Logger,
    facts?: HostFacts,
  ) {
    this.tools = sandboxTools();
    this.host = facts ?? hostFacts();
    // The real binary (node_modules/.bin holds a link): its directory is bound read-only.
    this.opencodeBin = realpathSync(opencodeBin);
  }

  private owner(): { uid: number; gid: number } | null {
    return this.host.dropTo;
  }

  async provision(shard: ShardStorage, trees: string[] = []): Promise<void> {
    provisionShard(shard);
    const o = this.owner();
    if (!o) return;
    // The agent's user owns its shard (0700: no other sandbox user could read it even if it were
    // visible) and every tree placed in it. chown -R does not follow symlinks.
    chownSync(shard.dir, o.uid, o.gid);
    chmodSync(shard.dir, 0o700);
    const subdirs = ["data", "config", "state", "cache", "home", "cwd", "workspaces", "tmp"].map((d) =>
      join(shard.dir, d),
    );
    await run("chown", ["-R", `${o.uid}:${o.gid}`, ...subdirs, ...trees]);
  }

  private spec(
    shard: ShardStorage,
    cwd: string,
    env: Record<string, string>,
    extra: Partial<SandboxSpec> = {},
  ): SandboxSpec {
    if (relative(shard.dir, cwd).startsWith("..")) throw new Error(`${cwd} is outside shard ${shard.id}`);
    return {
      rw: [{ src: shard.dir, dest: shard.dir }, ...(extra.rw ?? [])],
      ro: extra.ro ?? [],
      net: extra.net ?? "isolated",
      cwd,
      env: { ...sandboxEnv(shard), ...env },
      dieWithParent: extra.dieWithParent ?? true,
      newSession: extra.newSession,
    };
  }

  async start(spec: HarnessSpec): Promise<StartedHarness> {
    await this.provision(spec.shard);
    const o = this.owner();
    mkdirSync(spec.runDir, { recursive: true, mode: 0o700 });
    // The password sits in a 0600 file so a restarted control plane can reach an adopted harness.
    writeFileSync(join(spec.runDir, "password"), spec.password, { mode: 0o600 });
    const bridges = bridgeDir(spec.runDir, spec.harnessId);
    mkdirSync(bridges, { recursive: true, mode: 0o700 });
    if (o) chownSync(bridges, o.uid, o.gid);
    const logPath = join(spec.runDir, "harness.log");
    const logFd = openSync(logPath, "a", 0o600);
    const hostPort = await freePort();
    const open = spec.network === "open";
    const egress =
      spec.network === "allowlist"
        ? [...new Set(spec.egress.map(loopbackPort).filter((p): p is number => p !== null))]
        : [];
    // Inside its own network namespace the server can take any port; one no bridge uses.
    let innerPort = 4096;
    while (egress.includes(innerPort)) innerPort++;
    const port = open ? hostPort : innerPort;
    const socat = this.tools.socat;
    const inner: string[] = [];
    const outer: string[] = [];
    if (!open) {
      inner.push(`socat UNIX-LISTEN:${BRIDGE_DIR}/api.sock,fork,mode=0600 TCP:127.0.0.1:${innerPort} &`);
      outer.push(
        `${shq(socat)} TCP-LISTEN:${hostPort},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:${shq(join(bridges, "api.sock"))} &`,
      );
      for (const p of egress) {
        inner.push(
          `socat TCP-LISTEN:${p},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:${BRIDGE_DIR}/egress-${p}.sock &`,
        );
        const sock = join(bridges, `egress-${p}.sock`);
        outer.push(`${shq(socat)} UNIX-LISTEN:${shq(sock)},fork,mode=0666 TCP:127.0.0.1:${p} &`);
      }
    }
    inner.push(`exec ${shq(this.opencodeBin)} serve --hostname 127.0.0.1 --port ${port}`);
    const binDir = dirname(this.opencodeBin);
    const args = bwrapArgs(
      this.host,
      this.spec(spec.shard, join(spec.shard.dir, "cwd"), spec.env, {
        net: open ? "host" : "isolated",
        rw: [{ src: bridges, dest: BRIDGE_DIR }],
        ro: [{ src: binDir, dest: binDir }],
        // The harness outlives a control-plane restart and is adopted: its parent is the launcher
        // shell below, which stays.
        dieWithParent: true,
      }),
      ["sh", "-c", inner.join("\n")],
    );
    // Options (mounts, environment) through the pipe; the command (from the first `--`) stays on
    // bwrap's own command line, where it must be. It holds nothing secret.
    const cut = args.indexOf("--");
    const options = args.slice(0, cut);
    const command = args.slice(cut);
    // The launcher: host-side bridges and the sandbox in one process group (stop kills the group),
    // the bridges stopped when the sandbox ends. bwrap reads its arguments from a pipe (fd 3), not
    // its command line: they hold the harness's environment (its password, its gateway token), and
    // a command line is anyone's to read in `ps`.
    const launcher = [
      ...outer.map((l, i) => `${l.replace(/ &$/, " 3<&- &")}\nb${i}=$!`),
      `${[this.tools.bwrap, "--args", "3", ...command].map(shq).join(" ")}`,
      "rc=$?",
      outer.length ? `kill ${outer.map((_, i) => `$b${i}`).join(" ")} 2>/dev/null` : ":",
      "exit $rc",
    ].join("\n");
    const child = spawn("/bin/sh", ["-c", launcher], {
      cwd: "/",
      env: { PATH: "/usr/bin:/bin" },
      detached: true,
      stdio: ["ignore", logFd, logFd, "pipe"],
    });
    closeSync(logFd);
    const argPipe = child.stdio[3] as Writable;
    // A launcher that died at once closes the pipe (EPIPE): its start fails below, with its log.
    argPipe.on("error", () => {});
    argPipe.end(Buffer.from(options.map((a) => `${a}\0`).join("")));
    const pid = child.pid ?? null;
    const url = `http://127.0.0.1:${hostPort}`;
    const record: HarnessRecord & { endpoint: string } = {
      harnessId: spec.harnessId,
      driver: this.name,
      ref: { pid, pidStart: pid ? processStart(pid) : null } satisfies SandboxRef,
      endpoint: url,
      runDir: spec.runDir,
    };
    return untilReady(child, record, spec, this);
  }

  private ref(record: HarnessRecord): SandboxRef {
    return record.ref as SandboxRef;
  }

  async stop(record: HarnessRecord, graceMs: number): Promise<void> {
    const r = this.ref(record);
    await stopGroup(r.pid, r.pidStart, graceMs);
    // Its sockets go with it (the run dir itself stays, with the harness's log).
    rmSync(bridgeDir(record.runDir, record.harnessId), { recursive: true, force: true });
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
    const args = bwrapArgs(
      this.host,
      this.spec(spec.shard, spec.cwd, spec.env ?? {}, {
        net: spec.network === "open" ? "host" : "isolated",
      }),
      spec.command,
    );
    return runProcess(this.tools.bwrap, args, { ...spec, env: { PATH: "/usr/bin:/bin" }, cwd: "/" });
  }

  attach(spec: AttachSpec): PtyProcess {
    const args = bwrapArgs(
      this.host,
      this.spec(
        spec.shard,
        spec.cwd,
        { TERM: "xterm-256color", ...(spec.env ?? {}) },
        { net: spec.network === "open" ? "host" : "isolated", newSession: false },
      ),
      spec.command,
    );
    return spawnPty(this.tools.bwrap, args, {
      cwd: "/",
      env: { PATH: "/usr/bin:/bin" },
      cols: spec.cols,
      rows: spec.rows,
    });
  }
}
