import type { Command } from "commander";
import { action, connect } from "./connection.ts";
import { age, table } from "./format.ts";
import { styleFor } from "./style.ts";

const print = (text: string) => process.stdout.write(`${text}\n`);
const printJson = (v: unknown) => print(JSON.stringify(v, null, 2));
const when = (iso: string | null) => (iso ? `${age(iso)} ago` : "—");

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
}

export function registerSecrets(program: Command): void {
  const secrets = program
    .command("secrets")
    .description("Encrypted secrets: provider keys and the like (admin only); values are never shown");

  secrets
    .command("set")
    .description(
      "Store a secret (the value from --value or, better, stdin). An org secret named as a provider's key variable (ANTHROPIC_API_KEY, a provider's apiKeyEnv) is that provider's key, at once",
    )
    .argument("<name>", "like an environment variable: letters, digits and _")
    .option("--value <value>", "the value (visible in your shell's history: prefer stdin)")
    .option("--project <id>", "scope it to one project (default: the org)")
    .option("--json", "print the stored secret's info as JSON")
    .action(
      action(
        async (name: string, flags: { value?: string; project?: string; json?: boolean }, cmd: Command) => {
          const { client } = connect(cmd);
          const value = flags.value ?? (await readStdin());
          const info = await client.secrets.set({
            name,
            value,
            ...(flags.project ? { projectId: flags.project } : {}),
          });
          if (flags.json) return void printJson(info);
          const s = styleFor(process.stdout);
          print(`${s.green("✓")} stored ${s.bold(info.name)} (${info.scope}, ${info.id})`);
          return 0;
        },
      ),
    );

  secrets
    .command("ls")
    .description("List secrets: names, scopes, when last used; never values")
    .option("--json", "print as JSON")
    .action(
      action(async (flags: { json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const items = await client.secrets.list();
        if (flags.json) return void printJson(items);
        const s = styleFor(process.stdout);
        print(
          table(
            ["ID", "NAME", "SCOPE", "UPDATED", "LAST USED"],
            items.map((x) => [x.id, x.name, x.projectId ?? "org", when(x.updatedAt), when(x.lastUsedAt)]),
            s,
          ),
        );
        return 0;
      }),
    );

  secrets
    .command("rm")
    .description("Delete a secret")
    .argument("<id>", "secret id (sec_…)")
    .action(
      action(async (id: string, _flags: unknown, cmd: Command) => {
        const { client } = connect(cmd);
        const info = await client.secrets.delete(id);
        print(`deleted ${info.name}`);
        return 0;
      }),
    );

  secrets
    .command("rotate-master")
    .description(
      "A new master key: every secret's data key is re-wrapped with it, then the old key is forgotten",
    )
    .option("--json", "print { keyId, rewrapped } as JSON")
    .action(
      action(async (flags: { json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const r = await client.secrets.rotateMaster();
        if (flags.json) return void printJson(r);
        print(`master key rotated: now ${r.keyId}; ${r.rewrapped} data keys re-wrapped`);
        return 0;
      }),
    );
}
