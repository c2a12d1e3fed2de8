import { homedir } from "node:os";
import type { Session } from "@flotilla/client";
import { SessionStatus } from "@flotilla/contracts";
import { type Command, InvalidArgumentError, Option } from "commander";
import { action, connect, EXIT } from "./connection.ts";
import { age, changes, count, money, plural, table, truncate, truncateLeft } from "./format.ts";
import { diffColor, pendingLines, Renderer } from "./render.ts";
import { type Style, styleFor } from "./style.ts";

const ACTIVE = new Set(["running", "waiting_permission"]);

export function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("expected a whole number");
  return n;
}

export function statusColor(status: string, s: Style): string {
  if (status === "running" || status === "provisioning" || status === "queued") return s.cyan(status);
  if (status === "waiting_permission" || status === "interrupted") return s.yellow(status);
  if (status === "failed") return s.red(status);
  if (status === "deleted") return s.dim(status);
  return status;
}

const home = homedir();
const tildify = (p: string) => (p.startsWith(`${home}/`) ? `~${p.slice(home.length)}` : p);
const print = (text: string) => process.stdout.write(`${text}\n`);
const printJson = (v: unknown) => print(JSON.stringify(v, null, 2));

export function registerSessions(program: Command): void {
  program
    .command("sessions")
    .description("List sessions, newest first")
    .addOption(new Option("--status <status>", "only sessions in this status").choices(SessionStatus.options))
    .option("--search <text>", "only sessions whose title or repository contains this (any case)")
    .option("--limit <n>", "how many (1-200)", positiveInt, 50)
    .option("--json", "print the page as JSON")
    .action(
      action(
        async (
          flags: { status?: SessionStatus; search?: string; limit: number; json?: boolean },
          cmd: Command,
        ) => {
          const { client } = connect(cmd);
          const page = await client.sessions.list({
            status: flags.status,
            q: flags.search,
            limit: flags.limit,
          });
          if (flags.json) return void printJson(page);
          const s = styleFor(process.stdout);
          if (!page.items.length)
            return void print(s.dim(flags.status ? `no ${flags.status} sessions` : "no sessions yet"));
          const rows = page.items.map((x) => [
            x.id,
            statusColor(x.status, s),
            truncate(x.title, 40),
            truncateLeft(tildify(x.repo), 40),
            age(x.createdAt),
          ]);
          print(table(["ID", "STATUS", "TITLE", "REPO", "AGE"], rows, s));
          if (page.nextCursor) print(s.dim(`… more; raise --limit (showing ${page.items.length})`));
          return 0;
        },
      ),
    );

  program
    .command("show")
    .description("Show a session and its pending permission requests")
    .argument("<id>", "session id")
    .option("--json", "print { session, permissions } as JSON")
    .action(
      action(async (id: string, flags: { json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const [session, permissions] = await Promise.all([
          client.sessions.get(id),
          client.sessions.permissions(id),
        ]);
        if (flags.json) return void printJson({ session, permissions });
        const s = styleFor(process.stdout);
        print(showLines(session, s).join("\n"));
        if (permissions.length) {
          print(`\n${s.bold(`pending permission ${permissions.length === 1 ? "request" : "requests"}`)}`);
          for (const p of permissions)
            for (const l of pendingLines(p, s, process.stdout.columns)) print(`  ${l}`);
          print(s.dim(`  answer: flotilla approve ${id} [requestId]  |  flotilla reject ${id} [requestId]`));
        }
        return 0;
      }),
    );

  program
    .command("logs")
    .description("Print a session's events; --follow keeps streaming until Ctrl-C")
    .argument("<id>", "session id")
    .option("-f, --follow", "keep streaming new events until Ctrl-C")
    .option("--after <seq>", "only events after this sequence number", positiveInt, 0)
    .option("--json", "print events as JSON lines")
    .action(
      action(async (id: string, flags: { follow?: boolean; after: number; json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const s = styleFor(process.stdout);
        const renderer = new Renderer({ out: process.stdout, style: s, sessionId: id, seq: true });
        const show = (e: Parameters<Renderer["event"]>[0]) => {
          if (flags.json) print(JSON.stringify(e));
          else renderer.event(e);
        };
        if (!flags.follow) {
          let after = flags.after;
          for (;;) {
            const page = await client.sessions.events(id, { after, limit: 1000 });
            for (const e of page.items) show(e);
            if (page.items.length < 1000) break;
            after = page.items.at(-1)!.seq;
          }
          renderer.finish();
          return 0;
        }
        // Asks stored before we started may be long answered; only say how to answer live ones.
        const startSeq = (await client.sessions.get(id)).lastSeq;
        const live = new Renderer({ out: process.stdout, style: s, sessionId: id, askHint: true, seq: true });
        const ac = new AbortController();
        process.once("SIGINT", () => ac.abort());
        let warned = false;
        let last = flags.after;
        for await (const e of client.sessions.stream(id, {
          after: flags.after,
          signal: ac.signal,
          onReconnecting: (attempt) => {
            if (attempt === 1 && !warned) process.stderr.write("connection lost; reconnecting…\n");
            warned = true;
          },
          onReconnected: (after) => {
            if (warned) process.stderr.write(`reconnected; resuming after #${after}\n`);
            warned = false;
          },
        })) {
          last = e.seq;
          if (flags.json) print(JSON.stringify(e));
          else (e.seq > startSeq ? live : renderer).event(e);
        }
        renderer.finish();
        live.finish();
        // Where to pick up: the number --after takes.
        if (!flags.json)
          process.stderr.write(
            `stopped after #${last}: flotilla logs ${id} --follow --after ${last} resumes\n`,
          );
        return EXIT.interrupted;
      }),
    );

  program
    .command("abort")
    .description("Abort the session's running turn")
    .argument("<id>", "session id")
    .option("--json", "print the session as JSON")
    .action(
      action(async (id: string, flags: { json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const before = await client.sessions.get(id);
        const after = ACTIVE.has(before.status) ? await client.sessions.abort(id) : before;
        if (flags.json) return void printJson(after);
        const s = styleFor(process.stdout);
        if (!ACTIVE.has(before.status)) print(`nothing to abort: ${id} is ${statusColor(before.status, s)}`);
        else print(`${s.yellow("■")} aborted; ${id} is ${statusColor(after.status, s)}`);
        return 0;
      }),
    );

  program
    .command("diff")
    .description("The session's changes against its base commit (untracked files included)")
    .argument("<id>", "session id")
    .option("--stat", "per-file added/removed lines only")
    .option("--json", "print the diff as JSON")
    .action(
      action(async (id: string, flags: { stat?: boolean; json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const diff = await client.sessions.diff(id);
        if (flags.json) return void printJson(diff);
        const s = styleFor(process.stdout);
        if (!diff.files.length) {
          process.stderr.write(`no changes in ${id} (base ${diff.baseCommit.slice(0, 10)})\n`);
          return 0;
        }
        if (flags.stat) {
          const width = Math.max(...diff.files.map((f) => f.path.length));
          for (const f of diff.files) {
            const change = f.binary ? "binary" : changes(f.additions, f.deletions, s);
            print(
              ` ${f.path.padEnd(width)} | ${change}${f.status === "modified" ? "" : s.dim(`  ${f.status}`)}`,
            );
          }
          print(
            ` ${plural(diff.files.length, "file")} changed, ${changes(diff.additions, diff.deletions, s)}`,
          );
          return 0;
        }
        const patch = diff.patch.endsWith("\n") ? diff.patch.slice(0, -1) : diff.patch;
        print(
          s.enabled
            ? patch
                .split("\n")
                .map((l) => diffColor(l, s))
                .join("\n")
            : patch,
        );
        return 0;
      }),
    );

  program
    .command("fork")
    .description("Fork a session into a new one sharing its workspace and history")
    .argument("<id>", "session id")
    .option("--message <messageId>", "fork before this message (default: the whole history)")
    .addHelpText(
      "after",
      "\nThe fork starts with the parent's conversation up to the fork point and works in the same\nworkspace (the same checkout and branch): files either session changes show in both. To try\nsomething apart, start a new session on the same repository instead.",
    )
    .option("--json", "print the new session as JSON")
    .action(
      action(async (id: string, flags: { message?: string; json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const f = await client.sessions.fork(id, flags.message);
        if (flags.json) return void printJson(f);
        const s = styleFor(process.stdout);
        print(`forked ${id} → ${s.bold(f.id)}`);
        // One workspace for both: what either agent changes, the other sees (documented in --help).
        print(
          s.dim(`  it shares ${id}'s workspace (${f.workspacePath}): changes made in either show in both`),
        );
        print(s.dim(`  continue it: flotilla send ${f.id} "…" --wait`));
        return 0;
      }),
    );

  program
    .command("rm")
    .description("Delete a session (stops its harness when no other session uses the workspace)")
    .argument("<id>", "session id")
    .option("--workspace", "also remove the workspace checkout from disk")
    .action(
      action(async (id: string, flags: { workspace?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        await client.sessions.delete(id, { workspace: flags.workspace });
        print(`deleted ${id}${flags.workspace ? " and its workspace" : ""}`);
        return 0;
      }),
    );
}

function showLines(x: Session, s: Style): string[] {
  const t = x.usage.tokens;
  const rows: [string, string][] = [
    ["title", x.title],
    ["repo", tildify(x.repo)],
    ["branch", `${x.branch ?? "—"} ${s.dim(`(from ${x.baseRef} @ ${x.baseCommit.slice(0, 10)})`)}`],
    ["workspace", tildify(x.workspacePath)],
    ["model", x.model],
    ["agent", x.agent ?? "—"],
    ["permission", typeof x.permission === "string" ? x.permission : JSON.stringify(x.permission)],
    ["parent", x.parentId ?? "—"],
    ["created", `${x.createdAt} ${s.dim(`(${age(x.createdAt)} ago)`)}`],
    ["updated", `${x.updatedAt} ${s.dim(`(${age(x.updatedAt)} ago)`)}`],
    ["events", String(x.lastSeq)],
    ["usage", `${count(t.input)} in · ${count(t.output)} out · ${money(x.usage.cost)}`],
  ];
  if (x.error) rows.push(["error", s.red(`${x.error.name}: ${x.error.message}`)]);
  return [
    `${s.bold(x.id)}  ${statusColor(x.status, s)}`,
    ...rows.map(([k, v]) => `  ${s.dim(k.padEnd(10))}  ${v}`),
  ];
}
