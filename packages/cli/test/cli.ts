import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../../../test/support.ts";

export const BIN = join(ROOT, "bin/flotilla.mjs");

/** A clean environment: nothing from the developer's shell (FLOTILLA_URL, FLOTILLA_TOKEN, NO_COLOR) leaks in. */
export function cliEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", ...extra };
}

export interface Running {
  child: ChildProcess;
  /** stdout and stderr so far, interleaved as they arrived. */
  output(): string;
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<ChildProcess>();

/** `node bin/flotilla.mjs ...args` from the repo root, stdin closed (so: no keyboard, no prompts). */
export function spawnCli(args: string[], env: Record<string, string> = cliEnv()): Running {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let all = "";
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
    all += d.toString();
  });
  child.stderr!.on("data", (d: Buffer) => {
    err += d.toString();
    all += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("close", (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }),
  );
  return { child, output: () => all, stdout: () => out, stderr: () => err, exited };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to the end; a run that outlives `timeoutMs` is killed and fails the test. */
export async function runCli(
  args: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<CliResult> {
  const r = spawnCli(args, opts.env ?? cliEnv());
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      r.child.kill("SIGKILL");
      reject(new Error(`flotilla ${args.join(" ")} did not finish in time; output:\n${r.output()}`));
    }, opts.timeoutMs ?? 90_000);
  });
  try {
    const { code } = await Promise.race([r.exited, timeout]);
    return { code, stdout: r.stdout(), stderr: r.stderr() };
  } finally {
    clearTimeout(timer);
  }
}

/** Stops every CLI process a test left behind (a failed assertion mid-run, a timeout). */
export function killChildren(): void {
  for (const c of children) c.kill("SIGKILL");
  children.clear();
}

export async function until<T>(
  what: string,
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 60_000,
  describe: () => string = () => "",
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${describe()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A private tmux server for one test file (its own socket), so that tests never touch anyone
 * else's sessions; every session name is unique to the run.
 */
export class Tmux {
  readonly socket = `flotilla-cli-test-${process.pid}-${randomBytes(3).toString("hex")}`;
  private readonly sessions = new Set<string>();
  private socketPath: string | undefined;

  private tmux(...args: string[]): string {
    return execFileSync("tmux", ["-L", this.socket, ...args], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
  }

  /** Runs `command` in a fresh 200x50 terminal; the pane stays open after it exits, showing EXIT=<code>. */
  start(command: string): string {
    const name = `t${randomBytes(4).toString("hex")}`;
    this.tmux("new-session", "-d", "-s", name, "-x", "200", "-y", "50", `${command}; echo EXIT=$?; sleep 30`);
    this.sessions.add(name);
    this.socketPath ??= this.tmux("display-message", "-p", "-t", name, "#{socket_path}").trim();
    return name;
  }

  screen(name: string): string {
    return this.tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", name);
  }

  async waitFor(name: string, pattern: RegExp, timeoutMs = 90_000): Promise<RegExpMatchArray> {
    return until(
      `${pattern} on the tmux screen`,
      () => this.screen(name).match(pattern) ?? undefined,
      timeoutMs,
      () => `screen:\n${this.screen(name)}`,
    );
  }

  keys(name: string, ...keys: string[]): void {
    this.tmux("send-keys", "-t", name, ...keys);
  }

  /** Types text literally (no key-name lookup), e.g. a message with spaces. */
  type(name: string, text: string): void {
    this.tmux("send-keys", "-t", name, "-l", text);
  }

  kill(name: string): void {
    if (!this.sessions.delete(name)) return;
    try {
      this.tmux("kill-session", "-t", name);
    } catch {
      // already gone
    }
  }

  /** Ends this file's private tmux server and whatever still runs in it. */
  close(): void {
    for (const name of [...this.sessions]) this.kill(name);
    try {
      this.tmux("kill-server");
    } catch {
      // no server left
    }
    // tmux leaves its socket file behind when the server exits.
    if (this.socketPath) rmSync(this.socketPath, { force: true });
  }
}

/** Single-quotes a word for the shell tmux runs the command with. */
export const sh = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
