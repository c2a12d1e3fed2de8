import type { ChildProcess } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { freePort, postgresOutsideDir } from "@flotilla/server";
import { afterAll, describe, expect, it } from "vitest";
import { pidAlive, readyClient } from "../../../test/quickstart.ts";
import { ROOT, spawnFlotilla, tempDir, waitFor } from "../../../test/support.ts";
import { BIN, cliEnv, runCli, sh, Tmux } from "./cli.ts";

// `flotilla server reset` on a real home: a real `flotilla server` with its embedded Postgres. The
// home sits in a 0700 temp dir, so as root (where the postgres user cannot reach it) the cluster
// lives outside it, under /var/lib/flotilla/<hash>: the case the command exists for.
const base = tempDir("reset");
const home = join(base, "home");
const log = join(base, "server.log");
const outside = postgresOutsideDir(home);
const root = process.getuid?.() === 0;
const env = () => cliEnv({ FLOTILLA_HOME: home });
const servers: ChildProcess[] = [];
const postgres: number[] = [];
let tmux: Tmux | undefined;

async function startServer(): Promise<ChildProcess> {
  const port = await freePort();
  const child = spawnFlotilla(["server", "--port", String(port)], { FLOTILLA_HOME: home }, log);
  servers.push(child);
  await readyClient(child, { port, home, log });
  const cluster = realpathSync(join(home, "postgres"));
  postgres.push(Number(readFileSync(join(cluster, "postmaster.pid"), "utf8").split("\n")[0]));
  return child;
}

const exited = (c: ChildProcess) =>
  c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.once("exit", r));

afterAll(async () => {
  tmux?.close();
  for (const c of servers)
    if (c.pid && c.pid > 1 && c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  for (const pid of postgres) if (pid > 1 && pidAlive(pid)) process.kill(pid, "SIGKILL");
  rmSync(outside, { recursive: true, force: true });
  rmSync(base, { recursive: true, force: true });
});

describe("flotilla server reset", () => {
  it("refuses while a server runs on the home, and while a killed server's Postgres still does, saying which pid", async () => {
    mkdirSync(home, { recursive: true, mode: 0o700 });
    // No warm harness: nothing but the control plane and its Postgres run.
    writeFileSync(join(home, "config.yaml"), "pool:\n  warm: 0\n  warmWorkspaces: 0\n");
    const server = await startServer();
    const pg = postgres.at(-1)!;
    const cluster = realpathSync(join(home, "postgres"));
    if (root) expect(cluster).toBe(join(outside, "data"));

    let r = await runCli(["server", "reset", "--yes"], { env: env() });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `a Flotilla server is running on ${home} (pid ${server.pid}; its Postgres: pid ${pg}): stop it first`,
    );
    expect(r.stderr).toContain("nothing was removed");
    expect(existsSync(join(home, "admin.token"))).toBe(true);
    expect(existsSync(join(cluster, "PG_VERSION"))).toBe(true);

    // kill -9 of the control plane: its Postgres keeps running on the data directory.
    server.kill("SIGKILL");
    await exited(server);
    expect(pidAlive(pg)).toBe(true);
    r = await runCli(["server", "reset", "--yes"], { env: env() });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`Postgres (pid ${pg}) still runs on ${cluster}:`);
    expect(r.stderr).toContain(`stop Postgres: kill -INT ${pg}`);
    expect(existsSync(join(cluster, "PG_VERSION"))).toBe(true);

    // Done as it says, the way is clear.
    process.kill(pg, "SIGINT");
    await waitFor(async () => !pidAlive(pg), 30_000, "postgres stopped");
  });

  it("asks first: without a terminal it wants --yes; at a terminal, anything but y keeps everything", async () => {
    const r = await runCli(["server", "reset"], { env: env() });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("no terminal to confirm at: pass --yes to remove without asking");
    // It says what it would remove, both places.
    expect(r.stdout).toContain(`  ${home}  (workspaces, agent state, the admin token, logs`);
    if (root) expect(r.stdout).toContain(`  ${outside}  (the embedded Postgres`);
    expect(existsSync(join(home, "admin.token"))).toBe(true);

    tmux = new Tmux();
    const name = tmux.start(`cd ${sh(ROOT)} && FLOTILLA_HOME=${sh(home)} node ${sh(BIN)} server reset`);
    await tmux.waitFor(name, /Remove them\? \[y\/N\]/);
    tmux.type(name, "n");
    tmux.keys(name, "Enter");
    await tmux.waitFor(name, /^EXIT=1$/m);
    expect(tmux.screen(name)).toContain("nothing was removed");
    expect(existsSync(join(home, "admin.token"))).toBe(true);
    if (root) expect(existsSync(join(outside, "data", "PG_VERSION"))).toBe(true);
    tmux.kill(name);
  });

  it("--yes removes the home's data and the Postgres cluster, keeps config.yaml, says what it removed; the next start is a first boot", async () => {
    const r = await runCli(["server", "reset", "--yes"], { env: env() });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`removed ${home}\n`);
    if (root) expect(r.stdout).toContain(`removed ${outside}\n`);
    expect(r.stdout).toContain(`kept ${join(home, "config.yaml")}\n`);
    expect(readdirSync(home)).toEqual(["config.yaml"]);
    expect(existsSync(outside)).toBe(false);

    const again = await runCli(["server", "reset", "--yes"], { env: env() });
    expect(again).toMatchObject({ code: 0, stdout: `nothing to reset: ${home} holds no data\n` });

    // A fresh start: a new cluster, a new admin token (no stale password against an old cluster).
    const before = readFileSync(log, "utf8").split("First boot: admin token").length;
    const server = await startServer();
    expect(readFileSync(log, "utf8").split("First boot: admin token").length).toBe(before + 1);
    server.kill("SIGTERM");
    await exited(server);
    await waitFor(async () => !pidAlive(postgres.at(-1)!), 30_000, "postgres stopped with its server");
  });

  // As root only: otherwise the cluster lives inside the home and goes with it.
  it.runIf(root)(
    "a home deleted by hand leaves its cluster behind: the next start says to reset, and reset clears it",
    async () => {
      expect(existsSync(join(outside, "data", "PG_VERSION"))).toBe(true);
      rmSync(home, { recursive: true, force: true });
      const r = await runCli(["server"], { env: env() });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(
        `flotilla: ${join(outside, "data")} holds the Postgres cluster of an earlier ${home} that was deleted`,
      );
      expect(r.stderr).toContain("`flotilla server reset` removes what is left of both");
      const reset = await runCli(["server", "reset", "--yes"], { env: env() });
      expect(reset.code).toBe(0);
      expect(reset.stdout).toContain(`removed ${outside}\n`);
      expect(existsSync(outside)).toBe(false);
    },
  );

  it("leaves a directory that is not a Flotilla home alone", async () => {
    const other = join(base, "not-a-home");
    mkdirSync(other);
    writeFileSync(join(other, "notes.txt"), "mine\n");
    const r = await runCli(["server", "reset", "--yes"], { env: cliEnv({ FLOTILLA_HOME: other }) });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${other} does not look like a Flotilla home`);
    expect(readFileSync(join(other, "notes.txt"), "utf8")).toBe("mine\n");
  });
});
