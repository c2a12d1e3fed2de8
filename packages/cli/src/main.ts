import { readFileSync } from "node:fs";
import { Command } from "commander";
import { registerCommands } from "./commands.ts";
import { registerReset } from "./reset.ts";

// The version of the checkout (or installed package) this CLI runs from: the root package.json.
const { version } = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
  version: string;
};

const program = new Command()
  .name("flotilla")
  .description("Run fleets of coding agents: sessions, live events, diffs.")
  .version(version, "-V, --version", "print the version")
  .option("--server <url>", "Flotilla server URL (env FLOTILLA_URL)")
  .option("--token <token>", "API token (env FLOTILLA_TOKEN; default: $FLOTILLA_HOME/admin.token)");

const server = program
  .command("server")
  .description("Run the control plane (embedded Postgres unless DATABASE_URL is set)")
  .option("--host <host>", "bind address", undefined)
  .option("--port <port>", "port (default 7700)")
  .option("--config <file>", "config file (default $FLOTILLA_HOME/config.yaml)")
  .addHelpText(
    "after",
    `
Web UI: served from packages/web/dist. \`npm start\` builds it first; a server started without it
answers the UI's address with a page that says how to build it (the API works either way).

Data: everything lives under FLOTILLA_HOME (default ~/.flotilla): config, the admin token, shards
(workspaces, agent state), logs and the embedded Postgres. Run as root, the Postgres cluster itself
lives under /var/lib/flotilla/<hash> (Postgres refuses root), linked from FLOTILLA_HOME/postgres.
\`flotilla server reset\` removes both (config.yaml is kept), once the server is stopped.`,
  )
  .action(async (opts) => {
    // Loaded here only: every other command talks to a server and needs none of it.
    const { runServer } = await import("./server-command.ts");
    await runServer(opts);
  });

registerReset(server);
registerCommands(program);

await program.parseAsync(process.argv);
