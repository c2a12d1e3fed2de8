import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { open, readdir } from "node:fs/promises";
import nodePty from "@lydell/node-pty";
import { healthy } from "../agents/opencode/health.ts";
import {
  type ExecResult,
  type ExecSpec,
  type HarnessRecord,
  type HarnessSpec,
  HarnessStartError,
  type PtyProcess,
  type RuntimeDriver,
  type StartedHarness,
} from "./driver.ts";

/**
 * Process plumbing shared by the drivers that run on this machine (`local`, `sandbox`): a sandbox
 * is a local process whose command line starts with bwrap, so both drivers keep, stop and measure
 * their processes the same way.
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Fields after the comm field of /proc/<pid>/stat (comm may hold spaces and parens). */
function statFields(pid: number | string): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}

/** Start time of a process in clock ticks since boot: with the pid, identifies it across pid reuse. */
export function processStart(pid: number): string | null {
  return statFields(pid)?.[19] ?? null; // field 22 overall
}

/** Whether pid still names the process that started at `start` (and is not a zombie). */
export function sameProcess(pid: number | null, start: string | null): boolean {
  if (!pid) return false;
  const f = statFields(pid);
  if (!f || f[19] !== start) return false;
  return !f[0]!.startsWith("Z");
}

/** SIGTERM to a process group, SIGKILL after graceMs, then wait (bounded) until its leader is gone. */
export async function stopGroup(pid: number | null, start: string | null, graceMs: number): Promise<void> {
  if (!pid || !sameProcess(pid, start)) return;
  try {
    process.kill(-pid, "SIGTERM");
  } catch {
    return;
  }
  const end = Date.now() + graceMs;
  while (Date.now() < end && sameProcess(pid, start)) await sleep(50);
  // The group may hold stray children even when the leader left; SIGKILL them all.
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // ESRCH: the group is gone already, which is what we wanted.
  }
  const killEnd = Date.now() + 5000;
  while (Date.now() < killEnd && sameProcess(pid, start)) await sleep(20);
}

/**
 * Resident memory of a process and all its descendants. By parentage, not process group: a
 * sandboxed agent runs in a session of its own inside the sandbox.
 */
export async function treeRss(root: number): Promise<number> {
  const parent = new Map<number, number>();
  const rss = new Map<number, number>();
  for (const entry of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const f = statFields(entry);
    if (!f) continue;
    parent.set(Number(entry), Number(f[1])); // field 4: ppid
    rss.set(Number(entry), Number(f[21]) * 4096); // field 24: rss in pages
  }
  let total = 0;
  for (const [pid, bytes] of rss) {
    for (let p: number | undefined = pid, hops = 0; p && hops < 64; p = parent.get(p), hops++) {
      if (p === root) {
        total += bytes;
        break;
      }
    }
  }
  return total;
}

/** The last maxBytes of a file, or "" when there is none. */
export async function tailFile(path: string, maxBytes: number): Promise<string> {
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

/**
 * Runs a command to its end: output streamed to onOutput and kept (the tail, up to maxOutputBytes
 * per stream), killed with its whole process group at the deadline.
 */
export function runProcess(
  file: string,
  args: string[],
  spec: Pick<ExecSpec, "env" | "timeoutMs" | "stdin" | "onOutput" | "maxOutputBytes"> & {
    cwd?: string;
    uid?: number;
    gid?: number;
  },
): Promise<ExecResult> {
  const max = spec.maxOutputBytes ?? 4 * 1024 * 1024;
  return new Promise((resolve) => {
    const child = spawn(file, args, {
      cwd: spec.cwd,
      env: spec.env,
      detached: true, // its own group, so the deadline reaches everything it started
      stdio: [spec.stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      uid: spec.uid,
      gid: spec.gid,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outLen = 0;
    let errLen = 0;
    const keep = (buf: Buffer[], chunk: Buffer, len: number) => {
      buf.push(chunk);
      len += chunk.length;
      while (len > max && buf.length > 1) len -= buf.shift()!.length;
      return len;
    };
    child.stdout!.on("data", (c: Buffer) => {
      outLen = keep(out, c, outLen);
      spec.onOutput?.(c.toString("utf8"), "stdout");
    });
    child.stderr!.on("data", (c: Buffer) => {
      errLen = keep(err, c, errLen);
      spec.onOutput?.(c.toString("utf8"), "stderr");
    });
    if (spec.stdin !== undefined) child.stdin!.end(spec.stdin);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // ESRCH: it ended just as the time ran out; its exit is reported as usual.
      }
    }, spec.timeoutMs);
    const done = (exitCode: number | null, signal: string | null, error?: string) => {
      clearTimeout(timer);
      const clip = (b: Buffer[]) => {
        const s = Buffer.concat(b);
        return s.subarray(Math.max(0, s.length - max)).toString("utf8");
      };
      resolve({
        exitCode,
        signal,
        timedOut,
        stdout: clip(out),
        stderr: error ? `${clip(err)}${error}` : clip(err),
      });
    };
    child.once("error", (e) => done(null, null, e.message));
    child.once("close", (code, signal) => done(code, signal));
  });
}

/** A PTY running file+args, as the node-pty process behind a terminal. */
export function spawnPty(
  file: string,
  args: string[],
  opts: { cwd: string; env: Record<string, string>; cols: number; rows: number; uid?: number; gid?: number },
): PtyProcess {
  const pty = nodePty.spawn(file, args, {
    name: "xterm-256color",
    cols: opts.cols,
    rows: opts.rows,
    cwd: opts.cwd,
    env: opts.env,
    uid: opts.uid,
    gid: opts.gid,
  });
  return {
    onData: (cb) => {
      pty.onData(cb);
    },
    onExit: (cb) => {
      pty.onExit(({ exitCode }) => cb({ exitCode }));
    },
    write: (d) => pty.write(d),
    resize: (c, r) => pty.resize(c, r),
    kill: () => {
      try {
        pty.kill();
      } catch {
        // already gone
      }
    },
  };
}

/**
 * The second half of every driver's start, once its launcher is spawned (detached, its output in
 * the run dir's harness.log): record it (`onSpawn`, so a crash from here on leaves it adoptable),
 * then poll the server until it answers. If the launcher exits or the deadline passes first, the
 * harness is stopped and the start fails with the true cause and the log's tail.
 */
export async function untilReady(
  child: ChildProcess,
  record: HarnessRecord & { endpoint: string },
  spec: Pick<HarnessSpec, "password" | "readyTimeoutMs" | "onSpawn">,
  driver: Pick<RuntimeDriver, "logs" | "stop">,
): Promise<StartedHarness> {
  const exited = new Promise<{ code: number | null; signal: string | null }>((res) =>
    child.once("exit", (code, signal) => res({ code, signal })),
  );
  let gone: string | undefined;
  void exited.then((x) => {
    gone ??= `exited with ${x.signal ?? x.code}`;
  });
  child.once("error", (e) => {
    gone ??= e.message;
  });
  child.unref();
  await spec.onSpawn?.(record);
  // Early requests can hang (OpenCode): poll with short timeouts rather than one long request.
  const deadline = Date.now() + spec.readyTimeoutMs;
  while (Date.now() < deadline && !gone) {
    if (await healthy(record.endpoint, spec.password)) return { ...record, exited };
    await new Promise((r) => setTimeout(r, 100));
  }
  // Read why before stopping it: the stop's own signal must not pass for the cause.
  const why = gone ? `harness ${gone} before it was ready` : `harness not ready in ${spec.readyTimeoutMs} ms`;
  const tail = await driver.logs(record, 4000);
  await driver.stop(record, 1000);
  throw new HarnessStartError(why, tail);
}
