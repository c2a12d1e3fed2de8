import type { ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "@flotilla/server";
import { afterAll, describe, expect, it } from "vitest";
import {
  cleanUp,
  ctrlC,
  firstDemoSession,
  npmStart,
  pidAlive,
  postgresPid,
  readyClient,
} from "./quickstart.ts";
import { ROOT, spawnFlotilla, tempDir } from "./support.ts";

// The README's first command, as a newcomer runs it: `npm start`, no DATABASE_URL, no key, no config.
// Embedded Postgres, the scripted demo model, the default "ask" permission policy.

const home = tempDir("readme");
let port: number;
const children: ChildProcess[] = [];
const log = join(home, "out.log");
const ready = (child: ChildProcess) => readyClient(child, { port, home, log });

afterAll(() => cleanUp(children, home));

describe("the README's quick start", () => {
  it("`npm start` boots embedded Postgres and the demo model; a newcomer's first session runs; Ctrl-C stops everything", async () => {
    port = await freePort();
    const child = npmStart(
      ROOT,
      { PATH: process.env.PATH, HOME: process.env.HOME, FLOTILLA_HOME: home, FLOTILLA_PORT: String(port) },
      log,
    );
    children.push(child);
    const client = await ready(child);
    expect(readFileSync(log, "utf8")).toContain("First boot: admin token");
    await firstDemoSession(client);
    await ctrlC(child, client, home);
  });

  it("after a kill -9 of the control plane, the next start takes over the data directory and keeps every session", async () => {
    const first = spawnFlotilla(["server", "--port", String(port)], { FLOTILLA_HOME: home }, log);
    children.push(first);
    let client = await ready(first);
    const before = (await client.sessions.list()).items;
    expect(before).toHaveLength(1);
    const stalePg = postgresPid(home);
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
