import type { Command } from "commander";
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
