export * from "./api.ts";
export * from "./errors.ts";
export * from "./events.ts";
export * from "./ids.ts";
export * from "./tasks.ts";
export * from "./webhooks.ts";
