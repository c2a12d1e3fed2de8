import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, readdirSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { join } from "node:path";
import { FlotillaClient } from "@flotilla/client";
import { postgresOutsideDir } from "@flotilla/server";
import { expect } from "vitest";
import { collectUntil, makeRepo, untilTurnFinished, waitFor } from "./support.ts";

// The README's quick start as a newcomer runs it (`npm start`, then a first session on the demo
// model, then Ctrl-C), shared by the test of this checkout (readme.test.ts) and of a fresh clone
// of it (fresh-clone.test.ts).

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** `npm start` in `cwd`, in its own process group (as in a terminal), its output appended to `log`. */
export function npmStart(cwd: string, env: Record<string, string | undefined>, log: string): ChildProcess {
  const out = createWriteStream(log, { flags: "a" });
  const child = spawn("npm", ["start"], { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout!.pipe(out);
  child.stderr!.pipe(out);
  return child;
}

/** Waits for /readyz; the client uses the admin token the first boot left in `home`. */
export async function readyClient(
  child: ChildProcess,
  o: { port: number; home: string; log: string; timeoutMs?: number },
): Promise<FlotillaClient> {
  // An exit ends the wait at once (waitFor retries through errors until its deadline).
  await waitFor(
    async () =>
      child.exitCode !== null ||
      child.signalCode !== null ||
      (await fetch(`http://127.0.0.1:${o.port}/readyz`, { signal: AbortSignal.timeout(1000) })).ok,
    o.timeoutMs ?? 90_000,
    "flotilla ready",
  );
  if (child.exitCode !== null || child.signalCode !== null)
    throw new Error(
      `exited ${child.exitCode ?? child.signalCode} before it was ready: ${readFileSync(o.log, "utf8").slice(-3000)}`,
    );
  return new FlotillaClient({
    baseUrl: `http://127.0.0.1:${o.port}`,
    token: readFileSync(join(o.home, "admin.token"), "utf8").trim(),
  });
}

export function postgresPid(home: string): number {
  return Number(readFileSync(join(home, "postgres", "postmaster.pid"), "utf8").split("\n")[0]);
}

/**
 * A newcomer's first session on the demo model: it asks before editing, "once" lets it, the turn
 * succeeds and the file is in the workspace. Returns the session id.
 */
export async function firstDemoSession(client: FlotillaClient): Promise<string> {
  const catalog = await client.models();
  expect(catalog.default).toBe("demo/scripted-1");
  expect(catalog.models.find((m) => m.id === "demo/scripted-1")?.demo).toBe(true);

  const s = await client.sessions.create({ repo: makeRepo(), prompt: "add a note" });
  const upTo = await collectUntil(client, s.id, (e) => e.type === "permission.asked");
  const ask = upTo.at(-1)!;
  await client.sessions.reply(s.id, ask.type === "permission.asked" ? ask.data.requestId : "", {
    reply: "once",
  });
  const events = await collectUntil(client, s.id, untilTurnFinished(1));
  const fin = events.find((e) => e.type === "turn.finished");
  expect(fin?.type === "turn.finished" && fin.data.outcome).toBe("success");
  expect(readFileSync(join(s.workspacePath, "DEMO.md"), "utf8")).toContain("add a note");
  return s.id;
}

/** Ctrl-C in the terminal (SIGINT to the foreground process group): everything it started stops. */
export async function ctrlC(child: ChildProcess, client: FlotillaClient, home: string): Promise<void> {
  // A GET that may meet a kept-alive connection the server just closed: asked again, not failed on.
  const harnessPid = await waitFor(
    async () => (await client.harnesses()).find((h) => h.state === "ready")?.pid ?? undefined,
    10_000,
    "the ready harness's pid",
  );
  const pgPid = postgresPid(home);
  const exited = new Promise((r) => child.once("exit", r));
  if (child.pid && child.pid > 1) process.kill(-child.pid, "SIGINT");
  await exited;
  await waitFor(
    async () => !pidAlive(harnessPid) && !pidAlive(pgPid),
    20_000,
    "harness and postgres stopped",
  );
}

/** What a test left running (process groups, then the home's Postgres) is killed; the home goes, with a cluster outside it. */
/** The process group of a pid (field 5 of /proc/<pid>/stat, after the parenthesised command). */
function groupOf(pid: number | "self"): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
}

/**
 * Kills the process groups of whatever still runs from under `dir`. Harnesses are their own
 * process groups (they outlive a killed control plane, to be adopted), so a run that failed before
 * its Ctrl-C would otherwise leave them, and their sandboxes' bridges, running.
 */
function killLeftovers(dir: string): void {
  const mine = groupOf("self");
  for (const p of readdirSync("/proc")) {
    const pid = Number(p);
    if (!Number.isInteger(pid) || pid <= 1) continue;
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(`${dir}/`)) continue;
      const group = groupOf(pid);
      if (group > 1 && group !== mine) process.kill(-group, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
}

export function cleanUp(children: ChildProcess[], home: string): void {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null && c.pid && c.pid > 1) {
      try {
        process.kill(-c.pid, "SIGKILL");
      } catch {
        // not a group leader (spawned without detached): the process alone
        try {
          process.kill(c.pid, "SIGKILL");
        } catch {}
      }
    }
  }
  killLeftovers(home);
  try {
    const pid = postgresPid(home);
    if (pid > 1 && pidAlive(pid)) process.kill(pid, "SIGKILL");
  } catch {}
  // As root the cluster lives outside FLOTILLA_HOME (see platform/db/embedded.ts); remove it too.
  try {
    rmSync(realpathSync(join(home, "postgres")), { recursive: true, force: true });
  } catch {}
  rmSync(postgresOutsideDir(home), { recursive: true, force: true });
  rmSync(home, { recursive: true, force: true });
}
