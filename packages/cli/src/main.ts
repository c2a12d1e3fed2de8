import { Command } from "commander";
import { registerCommands } from "./commands.ts";

const program = new Command()
  .name("flotilla")
  .description("Run fleets of coding agents: sessions, live events, diffs.")
  .option("--server <url>", "Flotilla server URL (env FLOTILLA_URL)")
  .option("--token <token>", "API token (env FLOTILLA_TOKEN; default: $FLOTILLA_HOME/admin.token)");

program
  .command("server")
  .description("Run the control plane (embedded Postgres unless DATABASE_URL is set)")
  .option("--host <host>", "bind address", undefined)
  .option("--port <port>", "port (default 7700)")
  .option("--config <file>", "config file (default $FLOTILLA_HOME/config.yaml)")
  .action(async (opts) => {
    // Loaded here only: every other command talks to a server and needs none of it.
    const { runServer } = await import("./server-command.ts");
    await runServer(opts);
  });

registerCommands(program);

await program.parseAsync(process.argv);
