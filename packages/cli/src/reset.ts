import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { homedir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline/promises";
import type { Command } from "commander";
import { action, CliError, EXIT } from "./connection.ts";

/** What a Flotilla home holds; a directory with none of it is not one, and is left alone. */
const HOME_ENTRIES = [
  "admin.token",
  "postgres",
  "postgres.password",
  "postgres.log",
  "shards",
  "workspaces",
  "harnesses",
  "cache",
  "config.yaml",
];
/** The user's own settings, not data: a reset keeps it. */
const KEPT = "config.yaml";

export function registerReset(server: Command): void {
  server
    .command("reset")
    .description(
      "Delete this home's data: sessions, tasks, tokens, workspaces, logs and the embedded Postgres (config.yaml is kept)",
    )
    .option("-y, --yes", "remove without asking")
    .addHelpText(
      "after",
      `
Removes FLOTILLA_HOME (default ~/.flotilla) but its config.yaml, and the embedded Postgres cluster,
wherever it lives (as root: /var/lib/flotilla/<hash>). Refuses while a server, its Postgres or its
harnesses still run on that home. A database given by DATABASE_URL is not touched.`,
    )
    .action(action(async (flags: { yes?: boolean }) => reset(flags)));
}

interface Target {
  path: string;
  what: string;
}

async function reset(flags: { yes?: boolean }): Promise<number> {
  // Loaded here only, like `flotilla server`: the client commands need none of the server.
  const { flotillaHome, postgresOutsideDir, runningPostgres } = await import("@flotilla/server");
  const home = flotillaHome(process.env);
  if (home === "/" || home === resolve(homedir()))
    throw new CliError(
      "refused",
      `FLOTILLA_HOME is ${home}: not emptying that (is FLOTILLA_HOME set by mistake?)`,
    );

  // Where the cluster is: FLOTILLA_HOME/postgres itself, or the directory it links to, and (as root)
  // the directory named by the home's hash, even when the link is gone (a home deleted by hand).
  const link = join(home, "postgres");
  const clusters = new Set<string>();
  const dataDirs = new Set<string>([link]);
  if (isLink(link)) {
    const target = resolve(dirname(link), readlinkSync(link));
    dataDirs.add(target);
    clusters.add(basename(target) === "data" ? dirname(target) : target);
  }
  const outside = postgresOutsideDir(home);
  dataDirs.add(join(outside, "data"));
  if (existsSync(outside)) clusters.add(outside);

  for (const dir of dataDirs) {
    const pid = runningPostgres(dir);
    if (!pid) continue;
    const server = parentServer(pid);
    throw new CliError(
      "server_running",
      server
        ? `a Flotilla server is running on ${home} (pid ${server}; its Postgres: pid ${pid}): stop it first (Ctrl-C where it runs, or kill ${server}); nothing was removed`
        : `Postgres (pid ${pid}) still runs on ${dir}: stop the server using it first; if there is none (a server killed with kill -9 leaves its Postgres running), stop Postgres: kill -INT ${pid}; nothing was removed`,
    );
  }
  const users = processesUsing([home, ...clusters]);
  if (users.length)
    throw new CliError(
      "in_use",
      `processes still use ${home}: ${users.slice(0, 5).join(", ")}${users.length > 5 ? ` and ${users.length - 5} more` : ""} (harnesses or shells of a Flotilla server that runs or was killed): stop the server, or them, first; nothing was removed`,
    );

  const entries = existsSync(home) ? readdirSync(home) : [];
  if (entries.length && !entries.some((e) => HOME_ENTRIES.includes(e)))
    throw new CliError(
      "refused",
      `${home} does not look like a Flotilla home (no ${HOME_ENTRIES.slice(0, 3).join(", ")}…): nothing was removed`,
    );
  const keep = entries.includes(KEPT);
  const data = entries.filter((e) => e !== KEPT);
  const targets: Target[] = [];
  if (data.length)
    targets.push({
      path: home,
      what: `workspaces, agent state, the admin token, logs${lstatSafe(link)?.isDirectory() ? ", the embedded Postgres" : ""}${keep ? `; ${KEPT} is kept` : ""}`,
    });
  for (const c of clusters)
    targets.push({ path: c, what: "the embedded Postgres: every session, task, token and event" });
  if (!targets.length) {
    process.stdout.write(`nothing to reset: ${home} holds no data\n`);
    return EXIT.ok;
  }

  process.stdout.write(`This removes everything Flotilla keeps for FLOTILLA_HOME=${home}:\n`);
  for (const t of targets) process.stdout.write(`  ${t.path}  (${t.what})\n`);
  if (!flags.yes) {
    if (!process.stdin.isTTY)
      throw new CliError(
        "confirmation_needed",
        "no terminal to confirm at: pass --yes to remove without asking",
      );
    const rl = createInterface({ input: process.stdin, output: process.stdout });
    const answer = await rl.question("Remove them? [y/N] ");
    rl.close();
    if (!/^y(es)?$/i.test(answer.trim())) {
      process.stdout.write("nothing was removed\n");
      return EXIT.failed;
    }
  }

  if (keep) for (const e of data) rmSync(join(home, e), { recursive: true, force: true });
  else if (data.length) rmSync(home, { recursive: true, force: true });
  for (const c of clusters) rmSync(c, { recursive: true, force: true });
  for (const t of targets) process.stdout.write(`removed ${t.path}\n`);
  if (keep) process.stdout.write(`kept ${join(home, KEPT)}\n`);
  return EXIT.ok;
}

function lstatSafe(path: string) {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

function isLink(path: string): boolean {
  return lstatSafe(path)?.isSymbolicLink() ?? false;
}

/** The parent of a Postgres when it is a `flotilla server` (node running bin/flotilla.mjs): the control plane that started it. */
function parentServer(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (!(ppid > 1)) return undefined;
    const args = readFileSync(`/proc/${ppid}/cmdline`, "utf8").split("\0");
    return basename(args[0] ?? "").startsWith("node") && args.some((a) => a.includes("flotilla"))
      ? ppid
      : undefined;
  } catch {
    return undefined;
  }
}

/** Live processes (other than this one) whose command line or working directory is under one of `dirs`: "pid name". */
function processesUsing(dirs: string[]): string[] {
  const under = (p: string) => dirs.some((d) => p === d || p.startsWith(`${d}/`));
  const found: string[] = [];
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid);
  } catch {
    return [];
  }
  for (const pid of pids) {
    try {
      const args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      let cwd = "";
      try {
        cwd = readlinkSync(`/proc/${pid}/cwd`);
      } catch {
        // another user's process: its command line is enough
      }
      if (under(cwd) || args.some((a) => under(a) || dirs.some((d) => a.includes(`${d}/`)))) {
        const name = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
        found.push(`${pid} ${name}`);
      }
    } catch {
      // gone meanwhile
    }
  }
  return found;
}
