export * from "./api.ts";
export * from "./auth.ts";
export * from "./errors.ts";
export * from "./events.ts";
export * from "./ids.ts";
export { ERROR_CODES, type ErrorBodyShape, EVENT_TYPES, sseEventName } from "./light.ts";
export * from "./tasks.ts";
export * from "./terminal.ts";
export * from "./webhooks.ts";
