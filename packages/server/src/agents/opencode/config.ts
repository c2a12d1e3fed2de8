import type { PermissionPolicy } from "@flotilla/contracts";
import type { Config } from "../../config/config.ts";
import { BUNDLED, UNFRONTED_ENV } from "../../gateway/upstreams.ts";
import { agentStateEnv } from "../../runtime/shard-layout.ts";

type Action = "allow" | "ask" | "deny";
type OpencodePermission = Record<string, Action | Record<string, Action>>;

// Defaults that would otherwise stall an unattended turn forever (OPENCODE.md): set them explicitly.
const BASE: OpencodePermission = { external_directory: "deny", question: "deny", doom_loop: "deny" };

const PRESETS: Record<string, OpencodePermission> = {
  ask: { edit: "ask", bash: "ask", webfetch: "ask", doom_loop: "ask" },
  allow: { edit: "allow", bash: "allow", webfetch: "allow" },
  "read-only": { edit: "deny", bash: "deny", webfetch: "deny" },
};

export function toOpencodePermission(policy: PermissionPolicy): OpencodePermission {
  return { ...BASE, ...(typeof policy === "string" ? PRESETS[policy] : policy) };
}

/**
 * The policy after an "always" answer: the permission's patterns are allowed from now on, on top of
 * what the policy said (a preset is written out in OpenCode's shape first). Kept with the session,
 * so the answer holds on any harness, after any restart; OpenCode's own memory of it does not.
 */
export function allowAlways(
  policy: PermissionPolicy,
  permission: string,
  patterns: string[],
): PermissionPolicy {
  const base: OpencodePermission = typeof policy === "string" ? { ...PRESETS[policy] } : { ...policy };
  const current = base[permission];
  const rules: Record<string, Action> =
    typeof current === "object" ? { ...current } : current ? { "*": current } : {};
  for (const p of patterns) rules[p] = "allow";
  return { ...base, [permission]: rules };
}

/** OpenCode's session-level ruleset: last matching rule wins, so base rules go first. */
export function toRuleset(
  policy: PermissionPolicy,
): { permission: string; pattern: string; action: Action }[] {
  const rules: { permission: string; pattern: string; action: Action }[] = [];
  for (const [permission, v] of Object.entries(toOpencodePermission(policy))) {
    if (typeof v === "string") rules.push({ permission, pattern: "*", action: v });
    else for (const [pattern, action] of Object.entries(v)) rules.push({ permission, pattern, action });
  }
  return rules;
}

// Providers the gateway cannot front (see gateway/upstreams.ts): switched on by their variables,
// which go to the harness.
const UNFRONTED_PROVIDERS: Record<string, string> = {
  AWS_ACCESS_KEY_ID: "amazon-bedrock",
  AZURE_API_KEY: "azure",
};

/** The provider and model of a warm workspace's throwaway first turn (config.warmup); hidden from `GET /models`. */
export const WARMUP_PROVIDER = "flotilla-warmup";
export const WARMUP_MODEL = `${WARMUP_PROVIDER}/warmup`;

export function enabledProviders(config: Config): string[] {
  const ids = new Set(Object.keys(config.providers));
  if (config.warmup) ids.add(WARMUP_PROVIDER);
  for (const k of Object.keys(config.providerEnv)) {
    const p = BUNDLED[k]?.provider ?? UNFRONTED_PROVIDERS[k];
    if (p) ids.add(p);
  }
  return [...ids];
}

/** The model a session gets when it names none. */
export function defaultModel(config: Config): string | undefined {
  if (config.defaultModel) return config.defaultModel;
  for (const [id, p] of Object.entries(config.providers)) return `${id}/${Object.keys(p.models)[0]}`;
  if (config.providerEnv.ANTHROPIC_API_KEY) return "anthropic/claude-sonnet-4-5";
  if (config.providerEnv.OPENAI_API_KEY) return "openai/gpt-5";
  return undefined;
}

/**
 * The whole OpenCode config, passed as OPENCODE_CONFIG_CONTENT. Only providers we chose are enabled
 * so no request leaves for a provider nobody configured. Every provider the gateway fronts is
 * pointed at the model gateway with the harness's gateway token as its key: no provider key is in
 * a harness's config or environment.
 */
export function opencodeConfig(config: Config, gatewayToken: string): Record<string, unknown> {
  const model = defaultModel(config);
  const gateway = config.gateway.url;
  if (!gateway) throw new Error("the model gateway is not listening yet");
  const via = (id: string) => ({ baseURL: `${gateway}/gateway/${id}`, apiKey: gatewayToken });
  const provider: Record<string, unknown> = {};
  for (const [k, b] of Object.entries(BUNDLED))
    if (config.providerEnv[k]) provider[b.provider] = { options: via(b.provider) };
  for (const [id, p] of Object.entries(config.providers)) {
    provider[id] = {
      npm: "@ai-sdk/openai-compatible",
      name: p.name ?? id,
      options: via(id),
      models: Object.fromEntries(
        Object.entries(p.models).map(([mid, m]) => [mid, { name: m.name ?? mid, tool_call: m.toolCall }]),
      ),
    };
  }
  if (config.warmup)
    provider[WARMUP_PROVIDER] = {
      npm: "@ai-sdk/openai-compatible",
      name: "Flotilla warm-up (not offered to sessions)",
      options: { baseURL: config.warmup.baseURL, apiKey: "unused" },
      models: { warmup: { name: "warm-up", tool_call: true } },
    };
  return {
    ...(model ? { model, small_model: model } : {}),
    enabled_providers: enabledProviders(config),
    provider,
    permission: toOpencodePermission(config.permission),
    autoupdate: false,
    share: "disabled",
    // Off the first prompt's path (each measured to delay a new directory's first model request):
    // OpenCode's title agent (Flotilla titles its sessions itself, so this also saves a model call
    // per session) and its snapshot repository, which only OpenCode's own revert/unrevert and
    // session diff use. Flotilla offers neither; its diffs come from the workspace's git.
    agent: { title: { disable: true } },
    snapshot: false,
  };
}

/**
 * The agent server's own environment (besides the provider keys and config the manager adds): its
 * password, its directories inside the shard, and switches that keep it from reaching out on its
 * own (updates, model lists, LSP downloads, default plugins).
 */
export function opencodeServerEnv(shard: { dir: string }, password: string): Record<string, string> {
  return {
    ...agentStateEnv(shard),
    OPENCODE_SERVER_PASSWORD: password,
    OPENCODE_DISABLE_AUTOUPDATE: "1",
    OPENCODE_DISABLE_MODELS_FETCH: "1",
    OPENCODE_DISABLE_LSP_DOWNLOAD: "1",
    OPENCODE_DISABLE_DEFAULT_PLUGINS: "1",
    // Also off the first prompt's path. The file watcher feeds OpenCode's own UI (`file.edited`,
    // which Flotilla reads, comes from the edit tools, not the watcher); without FFF, OpenCode's
    // file search uses its other finder, with the same results.
    OPENCODE_EXPERIMENTAL_DISABLE_FILEWATCHER: "1",
    OPENCODE_DISABLE_FFF: "1",
  };
}

/** The endpoints a harness must reach: what a sandbox's `allowlist` network policy lets out. The
 * model gateway (every provider it fronts is behind it) and the warm-up model. */
export function modelEndpoints(config: Config): string[] {
  return [
    ...(config.gateway.url ? [config.gateway.url] : []),
    ...(config.warmup ? [config.warmup.baseURL] : []),
  ];
}

/** The provider variables a harness still gets: only those of providers the gateway cannot front. */
export function unfrontedProviderEnv(config: Config): Record<string, string> {
  return Object.fromEntries(Object.entries(config.providerEnv).filter(([k]) => UNFRONTED_ENV.test(k)));
}
