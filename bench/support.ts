import { execFileSync } from "node:child_process";
import { existsSync, lstatSync, mkdtempSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";

// Copied from test/support.ts rather than imported: the bench must not depend on the test tree
// (which pulls in vitest's `inject`).

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `flotilla-bench-${prefix}-`));
}

/**
 * The root of the control planes' homes, kept short: the sandbox runtime puts its bridges' Unix
 * sockets in <home>/harnesses/<harness id>/bridges/ while the path fits a socket address (sun_path),
 * and elsewhere under /tmp when it would not; short homes keep them with the run, removed with it.
 */
export function homesRoot(): string {
  return mkdtempSync(join(tmpdir(), "fb-"));
}

const gitEnv = {
  GIT_AUTHOR_NAME: "bench",
  GIT_AUTHOR_EMAIL: "bench@example.invalid",
  GIT_COMMITTER_NAME: "bench",
  GIT_COMMITTER_EMAIL: "bench@example.invalid",
};

/** A real git repository with one commit. */
export function makeRepo(): string {
  const dir = tempDir("repo");
  writeFileSync(join(dir, "README.md"), "# scratch\n");
  const git = (...args: string[]) =>
    execFileSync("git", args, { cwd: dir, env: { ...process.env, ...gitEnv }, stdio: "ignore" });
  git("init", "-q", "-b", "main");
  git("add", ".");
  git("commit", "-q", "-m", "init");
  return dir;
}

/**
 * Removes a temp home. As root, startEmbeddedPostgres keeps the cluster in /var/lib/flotilla/<hash>
 * when the home is not reachable by the postgres user (mkdtemp dirs are 0700) and only links it
 * from <home>/postgres: removing the home alone would leak the cluster, so follow the link first.
 */
export function removeHome(home: string): void {
  const link = join(home, "postgres");
  try {
    if (existsSync(link) && lstatSync(link).isSymbolicLink()) {
      const outside = dirname(resolve(home, readlinkSync(link)));
      if (outside.startsWith("/var/lib/flotilla/")) rmSync(outside, { recursive: true, force: true });
    }
  } catch {
    // best effort: a leaked cluster dir is not worth failing the run
  }
  rmSync(home, { recursive: true, force: true });
}

export interface Stats {
  n: number;
  min: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentiles: every figure is a value that was actually observed. */
export function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number) =>
    s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
  const r = (x: number) => Math.round(x * 100) / 100;
  return {
    n: s.length,
    min: r(s[0] ?? NaN),
    p50: r(at(50)),
    p95: r(at(95)),
    p99: r(at(99)),
    max: r(s.at(-1) ?? NaN),
    mean: r(s.length ? s.reduce((a, b) => a + b, 0) / s.length : NaN),
  };
}

/** n sequential runs of fn, each timed. */
export async function time(n: number, fn: () => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
  }
  return out;
}

const COLS = ["n", "min", "p50", "p95", "p99", "max", "mean"] as const;

/** A plain-text table of Stats rows, figures in milliseconds. */
export function table(title: string, rows: [string, Stats][]): string {
  const w = Math.max(title.length, ...rows.map(([k]) => k.length));
  const cell = (v: number | string) => String(v).padStart(9);
  const head = `${title.padEnd(w)} ${COLS.map((c) => cell(c === "n" ? c : `${c} ms`)).join("")}`;
  const lines = rows.map(([k, s]) => `${k.padEnd(w)} ${COLS.map((c) => cell(s[c])).join("")}`);
  return [head, "-".repeat(head.length), ...lines].join("\n");
}

export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  opencode: string;
  platform: string;
  commit: string;
}

export function machine(opencodeBin: string, repoRoot: string): Machine {
  const run = (cmd: string, args: string[], cwd?: string) => {
    try {
      return execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    } catch {
      return "unknown";
    }
  };
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    opencode: run(opencodeBin, ["--version"]),
    platform: `${process.platform}-${process.arch}`,
    commit: run("git", ["rev-parse", "--short", "HEAD"], repoRoot),
  };
}

/**
 * Minimal SSE reader for the harness's own stream (OpenCode sends only `data:` lines). Each frame
 * is stamped with the time its bytes were read, the same moment Flotilla's client stamps its own.
 */
export async function* sseFrames(
  body: AsyncIterable<Uint8Array>,
  now: () => number,
): AsyncGenerator<{ t: number; data: string }> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of body) {
    const t = now();
    buf += decoder.decode(chunk, { stream: true }).replaceAll("\r\n", "\n");
    let end = buf.indexOf("\n\n");
    while (end >= 0) {
      const frame = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const data = frame
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(l.startsWith("data: ") ? 6 : 5))
        .join("\n");
      if (data) yield { t, data };
      end = buf.indexOf("\n\n");
    }
  }
}
