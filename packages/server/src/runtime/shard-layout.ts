import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ShardStorage } from "./driver.ts";

/**
 * The directories of a state shard, the unit of storage a harness is given: the agent server's own
 * data, config, state and cache, a home, an empty working directory for the server, and the
 * workspaces placed on the shard. A sandbox binds the shard and nothing else of Flotilla's data, so
 * everything a harness (and its execs and terminals) may touch lives under it.
 */
export const SHARD_DIRS = ["data", "config", "state", "cache", "home", "cwd", "workspaces", "tmp"] as const;

export const workspacesDir = (shardDir: string) => join(shardDir, "workspaces");

/** Makes the shard's directories; idempotent. */
export function provisionShard(shard: ShardStorage): void {
  for (const d of SHARD_DIRS) mkdirSync(join(shard.dir, d), { recursive: true });
  // Commits made in a workspace (by the agent, or by a person in its terminal) need an identity;
  // the agent's own HOME holds one, so nothing falls back to the host's user or hostname.
  const gitconfig = join(shard.dir, "home", ".gitconfig");
  if (!existsSync(gitconfig))
    writeFileSync(gitconfig, "[user]\n\tname = Flotilla agent\n\temail = agent@flotilla.invalid\n");
  // Terminals start a login shell here: a short prompt, so a narrow screen does not wrap it.
  const profile = join(shard.dir, "home", ".bash_profile");
  if (!existsSync(profile)) writeFileSync(profile, "PS1='$ '\n");
}

/**
 * The environment every process over a shard starts from, built from nothing: never inherited from
 * the control plane, whose environment holds the database URL, tokens and provider keys.
 */
export function sandboxEnv(
  shard: ShardStorage,
  path = "/usr/local/bin:/usr/bin:/bin",
): Record<string, string> {
  return {
    PATH: path,
    HOME: join(shard.dir, "home"),
    LANG: "C.UTF-8",
    TMPDIR: "/tmp",
    GIT_TERMINAL_PROMPT: "0",
  };
}

/** OpenCode's own directories inside the shard (its SQLite lives in data/). */
export function agentStateEnv(shard: { dir: string }): Record<string, string> {
  return {
    XDG_DATA_HOME: join(shard.dir, "data"),
    XDG_CONFIG_HOME: join(shard.dir, "config"),
    XDG_STATE_HOME: join(shard.dir, "state"),
    XDG_CACHE_HOME: join(shard.dir, "cache"),
    npm_config_cache: join(shard.dir, "cache", "npm"),
  };
}
