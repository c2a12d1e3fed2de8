import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { appendFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "@flotilla/server";
import { afterAll, describe, expect, it } from "vitest";
import { cleanUp, ctrlC, firstDemoSession, npmStart, readyClient } from "./quickstart.ts";
import { deadline, ROOT, tempDir } from "./support.ts";

// The README's two commands in a fresh clone of this checkout (its HEAD: what is committed), on a
// fresh HOME: `npm start` installs the dependencies, builds the UI and boots; a first session runs on
// the demo model; then `npm test` (the check and one small test file), and the clone is still clean.
// Slow, and it talks to the npm registry: it runs in the load project, last and alone
// (vitest.config.ts). Each phase's duration is printed at the end.

const base = tempDir("fresh-clone"); // 0700: as root, Postgres lives outside the home, as under /root
const clone = join(base, "flotilla");
const home = join(base, "home"); // HOME; FLOTILLA_HOME is left to its default, ~/.flotilla
const flotillaHome = join(home, ".flotilla");
const prefix = join(base, "global");
// The clone's temporary files, the Postgres of its own test run included, stay here: found and
// stopped below even when that run is cut short (its teardown would not run).
const tmp = join(base, "tmp");
const log = join(base, "out.log");
const children: ChildProcess[] = [];
const timings: [string, number][] = [];
let port: number;

// The machine's npm cache, so that the install does not download every package again: the cache
// only saves the download (the packages are the lockfile's either way). Nothing else is shared:
// HOME, ~/.flotilla, OpenCode's plugin cache and node_modules all start empty.
const npmCache = execFileSync("npm", ["config", "get", "cache"], { encoding: "utf8" }).trim();
// This run's own tools (node_modules/.bin of the checkout, put on PATH by npx or npm) stay out.
const PATH = (process.env.PATH ?? "")
  .split(":")
  .filter((p) => !p.includes("node_modules"))
  .join(":");
const env = (extra: Record<string, string> = {}): Record<string, string> => ({
  PATH,
  HOME: home,
  TMPDIR: tmp,
  npm_config_cache: npmCache,
  ...(process.env.FLOTILLA_TEST_SCALE ? { FLOTILLA_TEST_SCALE: process.env.FLOTILLA_TEST_SCALE } : {}),
  ...extra,
});

async function timed<T>(phase: string, fn: () => Promise<T> | T): Promise<T> {
  const t0 = Date.now();
  try {
    return await fn();
  } finally {
    timings.push([phase, Date.now() - t0]);
  }
}

/** Runs a command in its own process group to the end, its output in the log; killed (the group) at the deadline. */
function run(
  cmd: string,
  args: string[],
  cwd: string,
  timeoutMs: number,
): Promise<{ code: number | null; out: string }> {
  appendFileSync(log, `\n$ ${cmd} ${args.join(" ")}\n`);
  const child = spawn(cmd, args, { cwd, env: env(), detached: true, stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let out = "";
  const keep = (d: Buffer) => {
    out += d.toString();
    appendFileSync(log, d);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      if (child.pid && child.pid > 1) process.kill(-child.pid, "SIGKILL");
      reject(new Error(`${cmd} ${args.join(" ")} did not finish in time:\n${out.slice(-3000)}`));
    }, deadline(timeoutMs));
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

afterAll(() => {
  // The clone's output, kept for a look after a failure (artifacts/ is not tracked).
  mkdirSync(join(ROOT, "artifacts"), { recursive: true });
  if (existsSync(log)) cpSync(log, join(ROOT, "artifacts", "fresh-clone.log"));
  cleanUp(children, flotillaHome);
  for (const d of existsSync(tmp) ? readdirSync(tmp) : [])
    if (d.startsWith("flotilla-test-pg-")) cleanUp([], join(tmp, d));
  rmSync(base, { recursive: true, force: true });
  console.log(
    `fresh clone, phase durations:\n${timings.map(([p, ms]) => `  ${p}: ${(ms / 1000).toFixed(1)} s`).join("\n")}`,
  );
});

describe("a fresh clone on a fresh HOME", () => {
  it(
    "`npm start` installs, builds the UI and boots; the first session runs on the demo model; the installed CLI works from elsewhere; Ctrl-C stops it",
    async () => {
      mkdirSync(home);
      mkdirSync(tmp);
      await timed("git clone", () =>
        execFileSync("git", ["clone", "--quiet", `file://${ROOT}`, clone], { stdio: "pipe" }),
      );
      port = await freePort();
      const child = npmStart(clone, env({ FLOTILLA_PORT: String(port) }), log);
      children.push(child);
      const client = await timed("npm start until /readyz (install, UI build, boot)", () =>
        readyClient(child, { port, home: flotillaHome, log, timeoutMs: 20 * 60_000 }),
      );
      const started = readFileSync(log, "utf8");
      // The first run's path, not a shortcut: the install and the build happened here.
      expect(started).toContain("flotilla: installing dependencies (npm install)");
      expect(started).toContain("flotilla: building the web UI");
      expect(started).toContain("First boot: admin token");

      const session = await timed("first session on the demo model", () => firstDemoSession(client));

      // `npm install -g` of the clone, as the README's tour says, into a private prefix: a `flotilla`
      // that runs from another directory and finds the server's token in the fresh HOME.
      await timed("npm install -g", async () => {
        const r = await run(
          "npm",
          ["install", "-g", "--prefix", prefix, "--no-audit", "--no-fund", clone],
          base,
          300_000,
        );
        expect(r.code, r.out).toBe(0);
      });
      const flotilla = (...args: string[]) =>
        execFileSync(join(prefix, "bin", "flotilla"), args, {
          cwd: tmpdir(),
          env: env({ FLOTILLA_URL: `http://127.0.0.1:${port}` }),
          encoding: "utf8",
        });
      const version = JSON.parse(readFileSync(join(clone, "package.json"), "utf8")).version as string;
      expect(flotilla("--version").trim()).toBe(version);
      expect(flotilla("sessions")).toContain(session);

      await timed("Ctrl-C", () => ctrlC(child, client, flotillaHome));
    },
    deadline(30 * 60_000),
  );

  it(
    "`npm test` in a minimal form (the check, then one test file) passes in the clone",
    async () => {
      const r = await timed("npm test -- packages/cli/test/help.test.ts", () =>
        run("npm", ["test", "--", "packages/cli/test/help.test.ts"], clone, 20 * 60_000),
      );
      expect(r.code, r.out.slice(-5000)).toBe(0);
      expect(r.out).toContain("openapi.json is up to date");
      expect(r.out).toMatch(/Test Files {2}1 passed \(1\)/);
    },
    deadline(25 * 60_000),
  );

  it("leaves `git status` clean", () => {
    const status = execFileSync("git", ["status", "--porcelain", "--untracked-files=all"], {
      cwd: clone,
      encoding: "utf8",
    });
    expect(status).toBe("");
  });
});
