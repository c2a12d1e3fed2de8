import { FlotillaError } from "@flotilla/contracts";
import { type Config, createLogger, loadConfig, startFlotilla } from "@flotilla/server";

export interface ServerFlags {
  host?: string;
  port?: string;
  config?: string;
}

/** `flotilla server` / `npm start`: run the control plane until SIGINT/SIGTERM, then stop what it started. */
export async function runServer(flags: ServerFlags): Promise<void> {
  let config: Config;
  try {
    config = loadConfig({
      env: process.env,
      flags: {
        host: flags.host,
        port: flags.port !== undefined ? Number(flags.port) : undefined,
        config: flags.config,
      },
    });
  } catch (e) {
    // A bad config file or variable: every problem, one line each, for a person to fix. Exit 2.
    if (e instanceof FlotillaError) refuse(e);
    throw e;
  }
  const log = createLogger(config.logLevel, {
    pretty: process.stdout.isTTY && !process.env.FLOTILLA_LOG_JSON,
  });
  const server = await startFlotilla(config, log).catch((e: unknown) => {
    // A refusal that says what to do (bubblewrap missing, say) is for a person, not a stack trace.
    if (e instanceof FlotillaError) {
      log.flush?.();
      refuse(e);
    }
    throw e;
  });
  if (server.adminToken) {
    process.stderr.write(
      `\n  First boot: admin token (shown once, also saved to ${config.home}/admin.token, mode 0600):\n\n    ${server.adminToken}\n\n`,
    );
  }
  process.stderr.write(
    `  Flotilla is running at ${server.url}\n  Try:  npx flotilla run "add a README" --repo /path/to/git/repo\n\n`,
  );
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "shutting down");
    await server.close();
    log.flush?.();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
}

function refuse(e: FlotillaError): never {
  process.stderr.write(`\nflotilla: ${e.message}\n`);
  process.exit(2);
}
