import { type Command, Option } from "commander";
import { action, connect } from "./connection.ts";
import { age, table } from "./format.ts";
import { styleFor } from "./style.ts";

const print = (text: string) => process.stdout.write(`${text}\n`);
const printJson = (v: unknown) => print(JSON.stringify(v, null, 2));
const when = (iso: string | null) => (iso ? `${age(iso)} ago` : "—");

export function registerTokens(program: Command): void {
  const token = program.command("token").description("API tokens (admin only)");

  token
    .command("create")
    .description("Create a token; it is printed once and cannot be shown again")
    .argument("<name>", "what the token is for, e.g. ci or alice-laptop")
    .addOption(new Option("--role <role>", "admin or member").choices(["admin", "member"]).default("member"))
    .option("--json", "print { token, info } as JSON")
    .action(
      action(async (name: string, flags: { role: "admin" | "member"; json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const created = await client.tokens.create(name, flags.role);
        if (flags.json) return void printJson(created);
        const s = styleFor(process.stdout);
        print(`${s.green("✓")} created ${created.info.role} token ${s.bold(created.info.id)} (${name})`);
        print(`\n  ${s.bold(created.token)}\n`);
        print(s.dim("  Copy it now: it is shown only this once. Use it as --token or FLOTILLA_TOKEN."));
        return 0;
      }),
    );

  token
    .command("list")
    .description("List tokens (never their secrets)")
    .option("--json", "print as JSON")
    .action(
      action(async (flags: { json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const items = await client.tokens.list();
        if (flags.json) return void printJson(items);
        const s = styleFor(process.stdout);
        const rows = items.map((t) => [
          t.revokedAt ? s.dim(t.id) : t.id,
          t.name,
          t.role,
          `${t.prefix}…`,
          when(t.createdAt),
          when(t.lastUsedAt),
          t.revokedAt ? s.red(`revoked ${when(t.revokedAt)}`) : s.green("active"),
        ]);
        print(table(["ID", "NAME", "ROLE", "PREFIX", "CREATED", "LAST USED", "STATE"], rows, s));
        return 0;
      }),
    );

  token
    .command("revoke")
    .description("Revoke a token; requests with it are refused from now on")
    .argument("<id>", "token id (tok_…)")
    .option("--json", "print the token info as JSON")
    .action(
      action(async (id: string, flags: { json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const info = await client.tokens.revoke(id);
        if (flags.json) return void printJson(info);
        print(`revoked ${info.id} (${info.name})`);
        return 0;
      }),
    );
}

export function registerSystem(program: Command): void {
  program
    .command("models")
    .description("Models the server can run (provider/model)")
    .option("--json", "print the catalog as JSON")
    .action(
      action(async (flags: { json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const catalog = await client.models();
        if (flags.json) return void printJson(catalog);
        const s = styleFor(process.stdout);
        if (!catalog.models.length) return void print(s.dim("no models configured"));
        const rows = catalog.models.map((m) => [
          m.id === catalog.default ? s.bold(m.id) : m.id,
          m.name,
          [m.id === catalog.default ? s.green("default") : "", m.demo ? s.yellow("demo") : ""]
            .filter(Boolean)
            .join(" "),
        ]);
        print(table(["MODEL", "NAME", ""], rows, s));
        return 0;
      }),
    );

  program
    .command("harnesses")
    .description("Agent servers the control plane runs, newest first")
    .option("--all", "include stopped ones")
    .option("--json", "print as JSON")
    .action(
      action(async (flags: { all?: boolean; json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const all = await client.harnesses();
        if (flags.json) return void printJson(all);
        const items = flags.all ? all : all.filter((h) => h.state !== "stopped");
        const s = styleFor(process.stdout);
        if (!items.length)
          return void print(
            s.dim(all.length ? "no running harnesses (--all shows stopped ones)" : "no harnesses"),
          );
        const rows = items.map((h) => [
          h.id,
          h.state === "ready" ? s.green(h.state) : h.state === "lost" ? s.red(h.state) : h.state,
          h.driver,
          h.pid ? String(h.pid) : "—",
          h.shardId,
          `${h.activeSessions} / ${h.sessionsServed}`,
          h.rssBytes ? `${Math.round(h.rssBytes / 1024 / 1024)} MB` : "—",
          `${age(h.startedAt)} ago`,
          h.reason ? s.dim(h.reason) : "",
        ]);
        print(
          table(
            ["ID", "STATE", "DRIVER", "PID", "SHARD", "ACTIVE / SERVED", "MEMORY", "STARTED", ""],
            rows,
            s,
          ),
        );
        return 0;
      }),
    );
}
