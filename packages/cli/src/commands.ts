import type { Command } from "commander";

export function registerCommands(_program: Command): void {}
