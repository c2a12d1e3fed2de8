import { USAGE_GROUPS, type UsageRow } from "@flotilla/contracts";
import { type Command, InvalidArgumentError } from "commander";
import { durationMs } from "./args.ts";
import { action, connect } from "./connection.ts";
import { age, count, money, table, truncate } from "./format.ts";
import { styleFor } from "./style.ts";

const print = (text: string) => process.stdout.write(`${text}\n`);

/** `flotilla overview`: the web UI's Overview page, in a terminal. */
export function registerOverview(program: Command): void {
  program
    .command("overview")
    .description("The fleet at a glance: sessions, tasks, queue, harnesses, today's usage, recent failures")
    .option("--json", "print as JSON")
    .action(
      action(async (flags: { json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const o = await client.overview();
        if (flags.json) return void print(JSON.stringify(o, null, 2));
        const s = styleFor(process.stdout);
        const t = o.today.tokens;
        print(
          `${s.bold("sessions")}  running ${o.sessions.running} · needs approval ${o.sessions.waiting_permission} · idle ${o.sessions.idle} · interrupted ${o.sessions.interrupted} · failed ${o.sessions.failed}`,
        );
        print(
          `${s.bold("tasks")}     queued ${o.tasks.queued} (${o.queue.ready} ready) · running ${o.tasks.running} · today: succeeded ${o.tasks.succeeded}, failed ${o.tasks.failed + o.tasks.dead + o.tasks.timed_out}, cancelled ${o.tasks.cancelled}`,
        );
        print(
          `${s.bold("today")}     ${money(o.today.cost)} · ${count(t.input)} in, ${count(t.output)} out, ${count(t.cacheRead + t.cacheWrite)} cache tokens (since ${o.since})`,
        );
        print(
          `${s.bold("harnesses")} ${o.harnesses.items.length} live, ${Math.round(o.harnesses.totalRssBytes / 2 ** 20)} MB`,
        );
        if (o.failures.length) {
          print("");
          print(s.bold("recent failures"));
          print(
            table(
              ["ID", "STATE", "TITLE", "ERROR", "AGE"],
              o.failures.map((f) => [
                f.id,
                s.red(f.state),
                truncate(f.title, 30),
                truncate(f.error?.message ?? "", 40),
                age(f.at),
              ]),
              s,
            ),
          );
        }
        return 0;
      }),
    );
}

/** `--since 7d` (a duration back from now: days, or what `durationMs` reads) or an ISO time. */
function sinceArg(v: string): string {
  const days = /^(\d+(?:\.\d+)?)d$/.exec(v.trim());
  if (days) return new Date(Date.now() - Number(days[1]) * 86_400_000).toISOString();
  if (/^\d{4}-\d\d-\d\d/.test(v.trim())) {
    const t = Date.parse(v);
    if (Number.isNaN(t)) throw new InvalidArgumentError("expected an ISO time, e.g. 2026-12-01T00:00:00Z");
    return new Date(t).toISOString();
  }
  return new Date(Date.now() - durationMs(v)).toISOString();
}

function byArg(v: string): string {
  const parts = v.split(",").map((p) => p.trim());
  for (const p of parts)
    if (!(USAGE_GROUPS as readonly string[]).includes(p))
      throw new InvalidArgumentError(`expected a comma list of ${USAGE_GROUPS.join(", ")}`);
  return parts.join(",");
}

/** `flotilla usage`: what model calls through the gateway used and cost, grouped. */
export function registerUsage(program: Command): void {
  program
    .command("usage")
    .description("Model usage and spend through the gateway, grouped by project, model, day, session or task")
    .option("--by <groups>", `comma list of ${USAGE_GROUPS.join(", ")} (default project)`, byArg)
    .option(
      "--since <when>",
      "from: a duration back (90m, 24h, 7d) or an ISO time (default 30 days)",
      sinceArg,
    )
    .option("--until <when>", "to, not included: a duration back or an ISO time (default now)", sinceArg)
    .option("--project <id>", "only this project's calls")
    .option("--session <id>", "only this session's calls")
    .option("--task <id>", "only this task's calls (over all its attempts)")
    .option("--csv", "print CSV (a header row, then one row per group)")
    .option("--json", "print the report as JSON")
    .action(
      action(
        async (
          flags: {
            by?: string;
            since?: string;
            until?: string;
            project?: string;
            session?: string;
            task?: string;
            csv?: boolean;
            json?: boolean;
          },
          cmd: Command,
        ) => {
          const { client } = connect(cmd);
          const q = {
            by: flags.by,
            since: flags.since,
            until: flags.until,
            project: flags.project,
            session: flags.session,
            task: flags.task,
          };
          if (flags.csv) return void process.stdout.write(await client.usageCsv(q));
          const r = await client.usage(q);
          if (flags.json) return void print(JSON.stringify(r, null, 2));
          const s = styleFor(process.stdout);
          const cells = (x: UsageRow) => [
            count(x.calls),
            x.refused ? s.red(count(x.refused)) : "0",
            count(x.inputTokens),
            count(x.outputTokens),
            count(x.cachedTokens),
            money(x.costUsd),
          ];
          print(
            table(
              [...r.by.map((b) => b.toUpperCase()), "CALLS", "REFUSED", "INPUT", "OUTPUT", "CACHED", "COST"],
              [
                ...r.items.map((x) => [...r.by.map((b) => String(x[b] ?? "-")), ...cells(x)]),
                [...r.by.map((_, i) => (i === 0 ? s.bold("total") : "")), ...cells(r.total)],
              ],
              s,
            ),
          );
          print(s.dim(`from ${r.since} to ${r.until}`));
          return 0;
        },
      ),
    );
}
