export { createApp, openapiInfo } from "./api/app.ts";
export { type Config, flotillaHome, loadConfig } from "./config/config.ts";
export {
  type EmbeddedDb,
  freePort,
  postgresOutsideDir,
  runningPostgres,
  startEmbeddedPostgres,
} from "./platform/db/embedded.ts";
export { createLogger, type Logger } from "./platform/logger.ts";
export { type RunningServer, startFlotilla } from "./server.ts";
