import type { AuditEvent, AuditFilters } from "@flotilla/client";
import { type Command, InvalidArgumentError, Option } from "commander";
import { durationMs } from "./args.ts";
import { action, connect, EXIT } from "./connection.ts";
import { age, table, truncate } from "./format.ts";
import { positiveInt } from "./sessions.ts";
import { type Style, styleFor } from "./style.ts";

const print = (text: string) => process.stdout.write(`${text}\n`);
const printJson = (v: unknown) => print(JSON.stringify(v, null, 2));

const OUTCOMES = ["ok", "denied", "failed"] as const;

/** `--since 2h` (that long ago) or an ISO time. */
function when(v: string): string {
  if (/^\d{4}-\d{2}-\d{2}/.test(v)) {
    const t = new Date(v);
    if (Number.isNaN(t.getTime())) throw new InvalidArgumentError(`not a time: ${v}`);
    return t.toISOString();
  }
  return new Date(Date.now() - durationMs(v)).toISOString();
}

interface FilterFlags {
  action?: string;
  actor?: string;
  target?: string;
  outcome?: (typeof OUTCOMES)[number];
  since?: string;
  until?: string;
}

const filters = (f: FilterFlags): AuditFilters => ({
  ...(f.action ? { action: f.action } : {}),
  ...(f.actor ? { actor: f.actor } : {}),
  ...(f.target ? { target: f.target } : {}),
  ...(f.outcome ? { outcome: f.outcome } : {}),
  ...(f.since ? { since: f.since } : {}),
  ...(f.until ? { until: f.until } : {}),
});

function withFilters(cmd: Command): Command {
  return cmd
    .option("--action <prefix>", "actions starting with this (token. or session.delete)")
    .option("--actor <id>", "done by this token id (tok_…), system or anonymous")
    .option("--target <id>", "done to this id (a session, task, token, webhook or secret)")
    .addOption(new Option("--outcome <outcome>", "only this outcome").choices(OUTCOMES))
    .option("--since <when>", "from this ISO time, or this long ago (2h, 30m)", when)
    .option("--until <when>", "before this ISO time, or this long ago", when);
}

function outcomeColor(o: string, s: Style): string {
  if (o === "ok") return s.green(o);
  if (o === "denied") return s.yellow(o);
  return s.red(o);
}

function eventsTable(items: AuditEvent[], s: Style): string {
  const rows = items.map((e) => [
    String(e.seq),
    age(e.at),
    e.actorLabel ? `${e.actorLabel} ${s.dim(e.actor)}` : e.actor,
    e.action,
    e.targetId ? `${e.targetType ?? ""} ${e.targetId}`.trim() : s.dim("—"),
    outcomeColor(e.outcome, s),
    e.ip ?? s.dim("—"),
    s.dim(truncate(e.requestId ?? "", 30)),
  ]);
  return table(["SEQ", "AGE", "ACTOR", "ACTION", "TARGET", "OUTCOME", "IP", "REQUEST"], rows, s);
}

export function registerAudit(program: Command): void {
  const audit = program
    .command("audit")
    .description("The org's audit log (admin): who did what, when, from where; hash-chained");

  withFilters(audit.command("ls").description("Audit rows, newest first"))
    .option("--limit <n>", "how many (1-500)", positiveInt, 50)
    .option("--json", "print the page as JSON")
    .action(
      action(async (flags: FilterFlags & { limit: number; json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const page = await client.audit.list({ ...filters(flags), limit: flags.limit });
        if (flags.json) return void printJson(page);
        const s = styleFor(process.stdout);
        if (!page.items.length) return void print(s.dim("no audit rows"));
        print(eventsTable(page.items, s));
        if (page.nextCursor)
          print(s.dim(`… more; raise --limit or narrow the filters (showing ${page.items.length})`));
        return 0;
      }),
    );

  withFilters(
    audit
      .command("export")
      .description("Every matching row, oldest first, as JSON lines: flotilla audit export > audit.jsonl"),
  ).action(
    action(async (flags: FilterFlags, cmd: Command) => {
      const { client } = connect(cmd);
      for await (const line of client.audit.export(filters(flags))) {
        if (!process.stdout.write(`${line}\n`)) await new Promise((res) => process.stdout.once("drain", res));
      }
      return 0;
    }),
  );

  audit
    .command("verify")
    .description(
      "Check the hash chain: exit 1 naming the first row altered, inserted or deleted (or a cut-off tail)",
    )
    .option("--json", "print the verdict as JSON")
    .action(
      action(async (flags: { json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const v = await client.audit.verify();
        if (flags.json) printJson(v);
        else {
          const s = styleFor(process.stdout);
          if (v.ok) print(`${s.green("✓")} audit log intact: ${v.checked} rows, chain head at ${v.headSeq}`);
          else
            print(
              `${s.red("✗")} audit log tampered at seq ${v.firstBadSeq}: ${v.reason} (${v.checked} rows read)`,
            );
        }
        return v.ok ? EXIT.ok : EXIT.failed;
      }),
    );
}
