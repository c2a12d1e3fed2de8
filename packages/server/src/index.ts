export { createApp, openapiInfo } from "./api/app.ts";
export { type Config, loadConfig } from "./config.ts";
export { freePort, startEmbeddedPostgres } from "./db/embedded.ts";
export { createLogger, type Logger } from "./logger.ts";
export { type RunningServer, startFlotilla } from "./server.ts";
