import {
  DEFAULT_WEBHOOK_EVENTS,
  DeliveryStatus,
  type WebhookDelivery,
  WebhookEventPattern,
} from "@flotilla/contracts";
import { type Command, Option } from "commander";
import { collectChoice } from "./args.ts";
import { action, connect } from "./connection.ts";
import { age, table, truncate } from "./format.ts";
import { positiveInt } from "./sessions.ts";
import { type Style, styleFor } from "./style.ts";

const print = (text: string) => process.stdout.write(`${text}\n`);
const printJson = (v: unknown) => print(JSON.stringify(v, null, 2));

const SIGNATURE_HELP = `
Every delivery is a POST with a JSON body { id, event, createdAt, data } and the headers
x-flotilla-event, x-flotilla-delivery (the same on every retry: dedupe on it), x-flotilla-timestamp
and x-flotilla-signature = "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + raw body).
A non-2xx answer is retried with back-off; \`flotilla webhook deliveries <id>\` shows the log.`;

function statusColor(status: string, s: Style): string {
  if (status === "delivered") return s.green(status);
  if (status === "failed") return s.red(status);
  return s.yellow(status);
}

/** The delivery log as a table; `withTarget` adds where it went (a task's events go to several places). */
export function deliveriesTable(items: WebhookDelivery[], s: Style, withTarget = false): string {
  const rows = items.map((d) => {
    const last =
      d.lastStatusCode !== null ? String(d.lastStatusCode) : d.lastError ? truncate(d.lastError, 30) : "—";
    const next =
      d.status === "pending" && d.nextAttemptAt ? s.dim(` next ${d.nextAttemptAt.slice(11, 19)}`) : "";
    const row = [
      d.id,
      d.event,
      `${statusColor(d.status, s)}${next}`,
      String(d.attempts),
      last,
      age(d.createdAt),
    ];
    if (withTarget) row.push(`${d.subscriptionId ?? "task webhook"} ${s.dim(truncate(d.url, 50))}`);
    return row;
  });
  const header = ["ID", "EVENT", "STATUS", "ATTEMPTS", "LAST", "AGE"];
  return table(withTarget ? [...header, "TARGET"] : header, rows, s);
}

export function registerWebhooks(program: Command): void {
  const webhook = program.command("webhook").description("Webhook subscriptions and their delivery logs");

  webhook
    .command("create")
    .description("Subscribe a URL to task and session events; the signing secret is printed once")
    .argument("<url>", "http(s) URL to POST events to")
    .option("--project <id>", "only this project's events (default: every project)")
    .option(
      "--event <pattern>",
      `event to send, repeatable or comma-separated: ${WebhookEventPattern.options.join(", ")} (default ${DEFAULT_WEBHOOK_EVENTS.join(", ")})`,
      collectChoice(WebhookEventPattern.options),
    )
    .option("--secret <secret>", "signing secret, 16-256 characters (default: generated)")
    .option("--json", "print the subscription with its secret as JSON")
    .addHelpText("after", SIGNATURE_HELP)
    .action(
      action(
        async (
          url: string,
          flags: { project?: string; event?: WebhookEventPattern[]; secret?: string; json?: boolean },
          cmd: Command,
        ) => {
          const { client } = connect(cmd);
          const w = await client.webhooks.create({
            url,
            ...(flags.project ? { projectId: flags.project } : {}),
            ...(flags.event?.length ? { events: flags.event } : {}),
            ...(flags.secret ? { secret: flags.secret } : {}),
          });
          if (flags.json) return void printJson(w);
          const s = styleFor(process.stdout);
          print(`${s.green("✓")} created webhook ${s.bold(w.id)} → ${w.url}`);
          print(
            s.dim(
              `  events ${w.events.join(", ")} · ${w.projectId ? `project ${w.projectId}` : "every project"}`,
            ),
          );
          print(`\n  secret ${s.bold(w.secret)}\n`);
          print(
            s.dim("  Copy it now: it is shown only this once. It signs x-flotilla-signature (see --help)."),
          );
          return 0;
        },
      ),
    );

  webhook
    .command("ls")
    .description("List webhook subscriptions (never their secrets)")
    .option("--json", "print as JSON")
    .action(
      action(async (flags: { json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const items = await client.webhooks.list();
        if (flags.json) return void printJson(items);
        const s = styleFor(process.stdout);
        if (!items.length) return void print(s.dim("no webhooks"));
        const rows = items.map((w) => [
          w.id,
          w.url,
          w.projectId ?? s.dim("all"),
          w.events.join(","),
          age(w.createdAt),
        ]);
        print(table(["ID", "URL", "PROJECT", "EVENTS", "AGE"], rows, s));
        return 0;
      }),
    );

  webhook
    .command("rm")
    .description("Delete a subscription; its pending deliveries are given up, its log stays")
    .argument("<id>", "webhook id (whk_…)")
    .action(
      action(async (id: string, _flags: unknown, cmd: Command) => {
        const { client } = connect(cmd);
        const w = await client.webhooks.delete(id);
        print(`deleted webhook ${w.id} (${w.url})`);
        return 0;
      }),
    );

  webhook
    .command("deliveries")
    .description("A subscription's delivery log, newest first")
    .argument("<id>", "webhook id")
    .addOption(
      new Option("--status <status>", "only deliveries in this status").choices(DeliveryStatus.options),
    )
    .option("--limit <n>", "how many (1-200)", positiveInt, 50)
    .option("--json", "print the page as JSON")
    .action(
      action(
        async (
          id: string,
          flags: { status?: DeliveryStatus; limit: number; json?: boolean },
          cmd: Command,
        ) => {
          const { client } = connect(cmd);
          const page = await client.webhooks.deliveries(id, { status: flags.status, limit: flags.limit });
          if (flags.json) return void printJson(page);
          const s = styleFor(process.stdout);
          if (!page.items.length)
            return void print(s.dim(`no deliveries for ${id}${flags.status ? ` (${flags.status})` : ""}`));
          print(deliveriesTable(page.items, s));
          if (page.nextCursor) print(s.dim(`… more; raise --limit (showing ${page.items.length})`));
          return 0;
        },
      ),
    );

  webhook
    .command("secret")
    .description("The secret that signs deliveries to tasks' own --webhook URLs (admin)")
    .option("--json", "print as JSON")
    .action(
      action(async (flags: { json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const secret = await client.webhooks.secret();
        if (flags.json) return void printJson(secret);
        print(secret.secret);
        return 0;
      }),
    );
}
