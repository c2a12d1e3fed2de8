import type { Config } from "../config/config.ts";

/** How a provider wants its key: a bearer token, or a header of its own. */
export type KeyStyle = "bearer" | "x-api-key" | "x-goog-api-key";

/** A provider as the gateway reaches it: the real address and the real key, which only it holds. */
export interface Upstream {
  id: string;
  baseURL: string;
  key: string | undefined;
  /** A project's own key, by project id: used for its calls in place of `key`. */
  projectKeys?: Record<string, string>;
  keyStyle: KeyStyle;
  /** The models a harness may ask for (absent: any of the provider's). */
  models?: Set<string>;
  /** USD per million tokens, by model. */
  cost: Record<string, { input: number; output: number; cacheRead?: number }>;
}

/**
 * OpenCode's bundled providers that the gateway fronts, by the environment variable that switches
 * each on: where the provider really is and how it takes its key. OpenCode is pointed at the gateway
 * through `provider.<id>.options.baseURL`, and its SDK appends the same paths it would to these.
 */
export const BUNDLED: Record<string, { provider: string; baseURL: string; keyStyle: KeyStyle }> = {
  ANTHROPIC_API_KEY: {
    provider: "anthropic",
    baseURL: "https://api.anthropic.com/v1",
    keyStyle: "x-api-key",
  },
  OPENAI_API_KEY: { provider: "openai", baseURL: "https://api.openai.com/v1", keyStyle: "bearer" },
  OPENROUTER_API_KEY: { provider: "openrouter", baseURL: "https://openrouter.ai/api/v1", keyStyle: "bearer" },
  GOOGLE_GENERATIVE_AI_API_KEY: {
    provider: "google",
    baseURL: "https://generativelanguage.googleapis.com/v1beta",
    keyStyle: "x-goog-api-key",
  },
  GEMINI_API_KEY: {
    provider: "google",
    baseURL: "https://generativelanguage.googleapis.com/v1beta",
    keyStyle: "x-goog-api-key",
  },
  GROQ_API_KEY: { provider: "groq", baseURL: "https://api.groq.com/openai/v1", keyStyle: "bearer" },
  MISTRAL_API_KEY: { provider: "mistral", baseURL: "https://api.mistral.ai/v1", keyStyle: "bearer" },
  DEEPSEEK_API_KEY: { provider: "deepseek", baseURL: "https://api.deepseek.com/v1", keyStyle: "bearer" },
  XAI_API_KEY: { provider: "xai", baseURL: "https://api.x.ai/v1", keyStyle: "bearer" },
};

/**
 * Providers whose requests are signed with the key rather than carrying it (AWS SigV4 for Bedrock)
 * or whose address is per deployment (Azure): the gateway cannot front them yet, so their variables
 * still go to the harness, and the boot log says so.
 */
export const UNFRONTED_ENV = /^(AWS_|AZURE_)/;

/** Every provider the gateway fronts, with its key, from the config and the environment. */
export function upstreams(config: Config): Map<string, Upstream> {
  const out = new Map<string, Upstream>();
  // A provider is offered when the org (or the environment) has a key for it; a project's own key
  // then replaces that key for the project's calls.
  const projectKeys = (variable: string | undefined) => {
    if (!variable) return undefined;
    const keys = Object.entries(config.projectProviderKeys ?? {}).flatMap(([project, vars]) =>
      vars[variable] ? [[project, vars[variable]] as const] : [],
    );
    return keys.length ? Object.fromEntries(keys) : undefined;
  };
  for (const [k, b] of Object.entries(BUNDLED)) {
    const key = config.providerEnv[k];
    if (!key || out.has(b.provider)) continue;
    out.set(b.provider, {
      id: b.provider,
      baseURL: b.baseURL,
      key,
      projectKeys: projectKeys(k),
      keyStyle: b.keyStyle,
      cost: {},
    });
  }
  for (const [id, p] of Object.entries(config.providers)) {
    out.set(id, {
      id,
      baseURL: p.baseURL.replace(/\/+$/, ""),
      key: p.apiKeyEnv ? config.providerEnv[p.apiKeyEnv] : undefined,
      projectKeys: projectKeys(p.apiKeyEnv),
      keyStyle: "bearer",
      models: new Set(Object.keys(p.models)),
      cost: Object.fromEntries(
        Object.entries(p.models).flatMap(([m, v]) => (v.cost ? [[m, v.cost] as const] : [])),
      ),
    });
  }
  return out;
}

/** An upstream as it crosses to the gateway process (JSON: the model list as an array). */
export type SerializedUpstream = Omit<Upstream, "models"> & { models?: string[] };

export function serializeUpstreams(config: Config): SerializedUpstream[] {
  return [...upstreams(config).values()].map((u) => ({ ...u, models: u.models ? [...u.models] : undefined }));
}

export function upstreamMap(xs: SerializedUpstream[]): Map<string, Upstream> {
  return new Map(xs.map((u) => [u.id, { ...u, models: u.models ? new Set(u.models) : undefined }]));
}

/** The variables a provider key can be named by: OpenCode's bundled providers' and the config's. */
export function providerKeyNames(config: Config): string[] {
  return [
    ...new Set([
      ...Object.keys(BUNDLED),
      ...Object.values(config.providers).flatMap((p) => (p.apiKeyEnv ? [p.apiKeyEnv] : [])),
    ]),
  ];
}
