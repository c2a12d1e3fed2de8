import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, existsSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { join } from "node:path";
import { FlotillaClient } from "@flotilla/client";
import { freePort } from "@flotilla/server";
import { afterAll, describe, expect, it } from "vitest";
import {
  collectUntil,
  makeRepo,
  ROOT,
  spawnFlotilla,
  tempDir,
  untilTurnFinished,
  waitFor,
} from "./support.ts";

// The README's first command, as a newcomer runs it: `npm start`, no DATABASE_URL, no key, no config.
// Embedded Postgres, the scripted demo model, the default "ask" permission policy.

const home = tempDir("readme");
let port: number;
const children: ChildProcess[] = [];
const log = join(home, "out.log");

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function ready(child: ChildProcess): Promise<FlotillaClient> {
  await waitFor(
    async () => {
      if (child.exitCode !== null)
        throw new Error(`exited ${child.exitCode}: ${readFileSync(log, "utf8").slice(-3000)}`);
      return (await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1000) })).ok;
    },
    90_000,
    "flotilla ready",
  );
  return new FlotillaClient({
    baseUrl: `http://127.0.0.1:${port}`,
    token: readFileSync(join(home, "admin.token"), "utf8").trim(),
  });
}

function postgresPid(): number {
  return Number(readFileSync(join(home, "postgres", "postmaster.pid"), "utf8").split("\n")[0]);
}

afterAll(async () => {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null && c.pid) {
      try {
        process.kill(-c.pid, "SIGKILL");
      } catch {}
    }
  }
  try {
    const pid = postgresPid();
    if (pidAlive(pid)) process.kill(pid, "SIGKILL");
  } catch {}
  // As root the cluster lives outside FLOTILLA_HOME (see platform/db/embedded.ts); remove it too.
  try {
    rmSync(realpathSync(join(home, "postgres")), { recursive: true, force: true });
  } catch {}
  rmSync(home, { recursive: true, force: true });
});

describe("the README's quick start", () => {
  it("`npm start` boots embedded Postgres and the demo model; a newcomer's first session runs; Ctrl-C stops everything", async () => {
    port = await freePort();
    const out = createWriteStream(log, { flags: "a" });
    const child = spawn("npm", ["start"], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        FLOTILLA_HOME: home,
        FLOTILLA_PORT: String(port),
      },
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(child);
    child.stdout!.pipe(out);
    child.stderr!.pipe(out);
    const client = await ready(child);
    expect(readFileSync(log, "utf8")).toContain("First boot: admin token");

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
    const harnessPid = (await client.harnesses()).find((h) => h.state === "ready")!.pid!;
    const pgPid = postgresPid();

    // Ctrl-C in a terminal signals the whole foreground process group.
    process.kill(-child.pid!, "SIGINT");
    await new Promise((r) => child.once("exit", r));
    await waitFor(
      async () => !pidAlive(harnessPid) && !pidAlive(pgPid),
      20_000,
      "harness and postgres stopped",
    );
  });

  it("after a kill -9 of the control plane, the next start takes over the data directory and keeps every session", async () => {
    const first = spawnFlotilla(["server", "--port", String(port)], { FLOTILLA_HOME: home }, log);
    children.push(first);
    let client = await ready(first);
    const before = (await client.sessions.list()).items;
    expect(before).toHaveLength(1);
    const stalePg = postgresPid();
    first.kill("SIGKILL");
    await new Promise((r) => first.once("exit", r));
    expect(pidAlive(stalePg)).toBe(true); // postgres outlived its parent, holding the data directory

    const second = spawnFlotilla(["server", "--port", String(port)], { FLOTILLA_HOME: home }, log);
    children.push(second);
    client = await ready(second);
    expect(pidAlive(stalePg)).toBe(false);
    const after = (await client.sessions.list()).items;
    expect(after.map((x) => [x.id, x.status])).toEqual(before.map((x) => [x.id, x.status]));
    expect(existsSync(join(home, "admin.token"))).toBe(true);
    const gone = new Promise((r) => second.once("exit", r));
    second.kill("SIGTERM");
    await gone;
  });
});
