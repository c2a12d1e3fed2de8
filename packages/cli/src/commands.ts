import type { Command } from "commander";
import { registerAttach } from "./attach.ts";
import { registerAudit } from "./audit.ts";
import { registerLand } from "./land.ts";
import { registerOverview, registerUsage } from "./overview.ts";
import { registerPermissions } from "./permissions.ts";
import { registerRun } from "./run.ts";
import { registerSecrets } from "./secrets.ts";
import { registerSessions } from "./sessions.ts";
import { registerTasks } from "./tasks.ts";
import { registerSystem, registerTokens } from "./tokens.ts";
import { registerWebhooks } from "./webhooks.ts";

const HELP = `
Environment:
  FLOTILLA_URL    server URL (default http://127.0.0.1:7700)
  FLOTILLA_TOKEN  API token (default: the admin token in $FLOTILLA_HOME/admin.token)
  FLOTILLA_HOME   the server's home directory (default ~/.flotilla)
  NO_COLOR        plain output (it is also plain whenever stdout is not a terminal)

Exit codes: 0 done (for run and send --wait: the turn succeeded; for run --queue and task submit
--wait: the task succeeded), 1 the server refused or the turn or task did not succeed, 2 the server
cannot be reached or no token was found, 130 Ctrl-C.`;

/**
 * The client commands. Each module registers one resource's commands; they share the connection
 * (connection.ts), the event renderer (render.ts) and the turn follower (watch.ts), and talk to the
 * server only through @flotilla/client.
 */
export function registerCommands(program: Command): void {
  program.configureHelp({ showGlobalOptions: true });
  registerRun(program);
  registerSessions(program);
  registerLand(program);
  registerPermissions(program);
  registerAttach(program);
  registerTasks(program);
  registerWebhooks(program);
  registerTokens(program);
  registerSystem(program);
  registerOverview(program);
  registerUsage(program);
  registerSecrets(program);
  registerAudit(program);
  program.addHelpText("after", HELP);
  // `flotilla logs … | head` closes the pipe early: that is the reader being done, not a crash.
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(0);
    throw e;
  });
}
