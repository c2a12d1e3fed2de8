import type { FlotillaClient, PermissionRequest } from "@flotilla/client";
import type { Command } from "commander";
import { action, CliError, connect } from "./connection.ts";
import { truncate } from "./format.ts";
import { styleFor } from "./style.ts";

const describe = (p: PermissionRequest) => `${p.permission} ${truncate(p.patterns.join(", "), 60)}`;

/** The request to answer: the named one, or the only pending one. */
async function pick(
  client: FlotillaClient,
  id: string,
  requestId: string | undefined,
): Promise<{ requestId: string; request?: PermissionRequest }> {
  const pending = await client.sessions.permissions(id);
  if (requestId) return { requestId, request: pending.find((p) => p.id === requestId) };
  if (pending.length === 1) return { requestId: pending[0]!.id, request: pending[0] };
  if (!pending.length) throw new CliError("not_found", `no pending permission request in ${id}`);
  throw new CliError(
    "conflict",
    `${pending.length} permission requests are pending in ${id}; name one:`,
    1,
    pending.map((p) => `${p.id}  ${describe(p)}`),
  );
}

export function registerPermissions(program: Command): void {
  program
    .command("approve")
    .description("Allow a pending permission request (the only one, unless named)")
    .argument("<id>", "session id")
    .argument("[requestId]", "permission request id (see `flotilla show <id>`)")
    .option("--always", 'allow it from now on (the ask\'s "always" patterns), not just once')
    .action(
      action(async (id: string, requestId: string | undefined, flags: { always?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const r = await pick(client, id, requestId);
        const reply = flags.always ? "always" : "once";
        await client.sessions.reply(id, r.requestId, { reply });
        const s = styleFor(process.stdout);
        process.stdout.write(
          `${s.green("✓")} allowed ${reply}: ${r.request ? describe(r.request) : r.requestId}\n`,
        );
        return 0;
      }),
    );

  program
    .command("reject")
    .description("Reject a pending permission request (the only one, unless named)")
    .argument("<id>", "session id")
    .argument("[requestId]", "permission request id (see `flotilla show <id>`)")
    .option("--message <text>", "tell the agent why, or what to do instead")
    .action(
      action(async (id: string, requestId: string | undefined, flags: { message?: string }, cmd: Command) => {
        const { client } = connect(cmd);
        const r = await pick(client, id, requestId);
        await client.sessions.reply(id, r.requestId, {
          reply: "reject",
          ...(flags.message ? { message: flags.message } : {}),
        });
        const s = styleFor(process.stdout);
        process.stdout.write(
          `${s.red("✗")} rejected: ${r.request ? describe(r.request) : r.requestId}${flags.message ? s.dim(` — "${flags.message}"`) : ""}\n`,
        );
        return 0;
      }),
    );
}
