import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { homedir, hostname } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { FlotillaError, PermissionPolicy } from "@flotilla/contracts";
import { isNode, LineCounter, parseDocument } from "yaml";
import { z } from "zod";
import type { TracingConfig } from "../platform/tracing.ts";

export const RUNTIMES = ["sandbox", "local"] as const;
export type RuntimeName = (typeof RUNTIMES)[number];
export const NETWORK_POLICIES = ["none", "allowlist", "open"] as const;

const ProviderModel = z.object({
  name: z.string().optional(),
  toolCall: z.boolean().default(true),
  /** Price in USD per million tokens: the model gateway charges each call by it. */
  cost: z
    .object({
      input: z.number().min(0),
      output: z.number().min(0),
      cacheRead: z.number().min(0).optional(),
    })
    .strict()
    .optional(),
});

/** An extra OpenAI-compatible provider (vLLM, Ollama, LM Studio, a gateway, the scripted model). */
export const ProviderConfig = z
  .object({
    name: z.string().optional(),
    baseURL: z.url(),
    /** Name of the environment variable holding the key; the key itself never sits in the file. */
    apiKeyEnv: z.string().optional(),
    models: z
      .record(z.string().min(1), ProviderModel)
      .refine((m) => Object.keys(m).length > 0, "declare at least one model"),
  })
  .strict();
export type ProviderConfig = z.infer<typeof ProviderConfig>;

/**
 * A code host Flotilla pushes to and opens pull requests on. Secrets are named by environment
 * variable, never written in the file, and reach only the control plane's own git and API calls.
 */
export const ForgeConfig = z
  .object({
    /** `github`: github.com or GitHub Enterprise Server (set apiUrl); `gitea`: Gitea or Forgejo (set apiUrl). */
    type: z.enum(["github", "gitea"]),
    /** The REST API's base: https://api.github.com (default), https://HOST/api/v3 for Enterprise,
     * https://HOST/api/v1 for Gitea. */
    apiUrl: z.url().optional(),
    /** Hosts of the git remotes this forge serves (default: github.com, or the apiUrl's host). */
    hosts: z.array(z.string().min(1)).optional(),
    /** A token's environment variable (a fine-grained personal access token, or a bot's). */
    tokenEnv: z.string().optional(),
    /** A GitHub App instead of a token: short-lived installation tokens, made per repository. */
    app: z
      .object({
        id: z.union([z.number().int().positive(), z.string().min(1)]),
        privateKeyEnv: z.string().optional(),
        privateKeyFile: z.string().optional(),
      })
      .strict()
      .refine((a) => a.privateKeyEnv || a.privateKeyFile, "set privateKeyEnv or privateKeyFile")
      .optional(),
    /** The secret the forge signs its webhooks with (X-Hub-Signature-256), by environment variable. */
    webhookSecretEnv: z.string().optional(),
    /** Who may start work with a `/flotilla <prompt>` comment: GitHub's author associations. */
    commandAssociations: z.array(z.string()).optional(),
    /** Labels every pull request Flotilla opens gets. */
    labels: z.array(z.string()).optional(),
  })
  .strict();
export type ForgeConfig = z.infer<typeof ForgeConfig>;

/** A forge as the control plane uses it: its secrets read from the environment at start. */
export interface Forge {
  name: string;
  type: "github" | "gitea";
  apiUrl: string;
  hosts: string[];
  token: string | undefined;
  app: { id: string; privateKey: string } | undefined;
  webhookSecret: string | undefined;
  commandAssociations: string[];
  labels: string[];
}

export const AutoCommit = z.enum(["off", "turn", "task"]);
export type AutoCommit = z.infer<typeof AutoCommit>;

/** The file at $FLOTILLA_HOME/config.yaml (or --config). Every field is optional. */
export const FileConfig = z
  .object({
    host: z.string().optional(),
    port: z.number().int().min(0).max(65535).optional(),
    databaseUrl: z.string().optional(),
    logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).optional(),
    defaultModel: z.string().optional(),
    permission: PermissionPolicy.optional(),
    providers: z.record(z.string().regex(/^[a-z0-9][a-z0-9_-]*$/i), ProviderConfig).optional(),
    demo: z.enum(["auto", "on", "off"]).optional(),
    /** Where agents run: `sandbox` (bubblewrap, the default) or `local` (unsandboxed, unsafe). */
    runtime: z.enum(RUNTIMES).optional(),
    /** The way out of a sandbox: `none`, `allowlist` (the model endpoints only; default) or `open`. */
    network: z.enum(NETWORK_POLICIES).optional(),
    scheduler: z
      .object({
        maxConcurrent: z.number().int().positive().optional(),
        perProject: z.number().int().positive().optional(),
        perToken: z.number().int().positive().optional(),
        maxQueued: z.number().int().positive().optional(),
        memoryBudgetMb: z.number().int().positive().optional(),
        harnessMemoryMb: z.number().int().positive().optional(),
        leaseMs: z.number().int().min(1000).optional(),
      })
      .strict()
      .optional(),
    /** Requests to addresses users choose (webhook URLs, git remotes) never go to loopback, private,
     * link-local or metadata addresses; these CIDRs (`10.1.2.0/24`), addresses or host names
     * (`git.internal`, `*.corp.example`) are exceptions (platform/http/egress.ts). */
    egress: z
      .object({ allow: z.array(z.string().min(1).max(253)).optional() })
      .strict()
      .optional(),
    webhooks: z
      .object({
        backoffBaseMs: z.number().int().min(10).optional(),
        maxAttempts: z.number().int().min(1).max(50).optional(),
      })
      .strict()
      .optional(),
    pool: z
      .object({
        warm: z.number().int().min(0).optional(),
        warmWorkspaces: z.number().int().min(0).max(8).optional(),
        hotMs: z.number().int().min(1000).optional(),
        workspacesPerHarness: z.number().int().min(1).optional(),
        idleMs: z.number().int().min(1000).optional(),
        maxSessionsPerHarness: z.number().int().min(1).optional(),
        recycleMemoryMb: z.number().int().min(64).optional(),
      })
      .strict()
      .optional(),
    forges: z.record(z.string().regex(/^[a-z0-9][a-z0-9_-]*$/i), ForgeConfig).optional(),
    /** Landing work: `autoCommit` commits a session's changes at the end of every successful turn
     * (`turn`) or task (`task`); `projects` sets it per repository (a local path or a URL). */
    git: z
      .object({
        autoCommit: AutoCommit.optional(),
        projects: z.record(z.string().min(1), z.object({ autoCommit: AutoCommit }).strict()).optional(),
      })
      .strict()
      .optional(),
    /** The address people reach this server at, for links back to it (pull requests, comments). */
    publicUrl: z.url().optional(),
    /** The model gateway harnesses call models through (a listener of its own, on loopback). */
    gateway: z
      .object({
        host: z.string().optional(),
        port: z.number().int().min(0).max(65535).optional(),
        /** Enforced by the gateway before each call: requests per minute (429 + Retry-After, which
         * OpenCode waits out) and a project's spend per UTC day (refused like a task budget). */
        limits: z
          .object({
            projectRpm: z.number().int().positive().optional(),
            tokenRpm: z.number().int().positive().optional(),
            projectDailyUsd: z.number().positive().optional(),
            tokenDailyUsd: z.number().positive().optional(),
            dailyMode: z.enum(["hard", "warn"]).optional(),
          })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
    /** OpenTelemetry traces: the OTLP/HTTP collector's base URL (as OTEL_EXPORTER_OTLP_ENDPOINT:
     * spans go to its /v1/traces). The OTEL_EXPORTER_OTLP_* variables win over it. */
    tracing: z.object({ endpoint: z.url().optional() }).strict().optional(),
    harness: z
      .object({
        readyTimeoutMs: z.number().int().positive().optional(),
        stopGraceMs: z.number().int().positive().optional(),
        healthIntervalMs: z.number().int().positive().optional(),
        startAttempts: z.number().int().min(1).max(10).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();
export type FileConfig = z.infer<typeof FileConfig>;

/** What the model gateway enforces besides a task's own budgets (absent: no limit). */
export interface GatewayLimits {
  projectRpm?: number;
  tokenRpm?: number;
  projectDailyUsd?: number;
  /** Spend per UTC day of the API token that submitted a task (sessions made directly have none). */
  tokenDailyUsd?: number;
  /** hard (default): a call once a daily limit is reached is refused; warn: it goes through, and a
   * `budget.warning` event and webhook say so (once per limit per day). */
  dailyMode?: "hard" | "warn";
}

export interface Config {
  home: string;
  /** This replica's stable name: it owns the shards and harnesses it made, across its restarts. */
  replicaId: string;
  host: string;
  port: number;
  databaseUrl: string | undefined;
  logLevel: string;
  defaultModel: string | undefined;
  permission: PermissionPolicy;
  providers: Record<string, ProviderConfig>;
  forges: Forge[];
  git: { autoCommit: AutoCommit; projects: Record<string, { autoCommit: AutoCommit }> };
  /** Links back to this server start here (default: its own listening address). */
  publicUrl: string | undefined;
  /** The warm-up model (set at boot when warm workspaces are on): an instant scripted reply that a
   * warm workspace's throwaway first turn is sent to, never offered to sessions. */
  warmup?: { baseURL: string };
  /** Provider keys found in the environment: the model gateway's, never a harness's (but for the
   * providers the gateway cannot front, see gateway/upstreams.ts). */
  providerEnv: Record<string, string>;
  /** Provider keys stored for one project (secrets of project scope, named as a provider key):
   * that project's calls use them instead of the org's. Set at boot from the secret store. */
  projectProviderKeys?: Record<string, Record<string, string>>;
  /** The model gateway's listener. `port` 0: the API port + 1 when that is fixed, else any free
   * port. `url` is set at boot, once it listens: what harnesses are configured to call. */
  gateway: { host: string; port: number | undefined; url?: string; limits: GatewayLimits };
  /** The token Prometheus scrapes `/metrics` with (FLOTILLA_METRICS_TOKEN; else made at first boot
   * in $FLOTILLA_HOME/metrics.token). */
  metricsToken: string | undefined;
  /** The secret store's master key (FLOTILLA_MASTER_KEY; else $FLOTILLA_HOME/master.key) and, while
   * a rotation by environment is under way, the keys it replaces (FLOTILLA_MASTER_KEY_PREVIOUS). */
  masterKey: string | undefined;
  masterKeyPrevious: string | undefined;
  demo: "auto" | "on" | "off";
  /** Where OpenTelemetry spans are exported (OTLP/HTTP); no endpoint: tracing is off, at no cost. */
  tracing: TracingConfig;
  /** The default runtime of new shards (a session or task may ask for another, as its role allows). */
  runtime: RuntimeName;
  /** The default network policy of sandboxed harnesses. */
  network: (typeof NETWORK_POLICIES)[number];
  harness: {
    readyTimeoutMs: number;
    stopGraceMs: number;
    healthIntervalMs: number;
    /** A harness start that fails is tried this many times in all, with back-off, before it fails its sessions. */
    startAttempts: number;
    opencodeBin: string;
    /** npm cache shared by every harness (OpenCode fetches its plugin packages on first use). */
    npmCacheDir: string;
  };
  webhooks: { backoffBaseMs: number; maxAttempts: number };
  /** Exceptions to the egress policy (platform/http/egress.ts): CIDRs, addresses, host names. The
   * hosts of configured forges are allowed too (an operator named them). */
  egress: { allow: string[] };
  pool: {
    /** Ready harnesses kept over fresh shards, so new work starts without waiting for one. */
    warm: number;
    /** Checkouts kept ready per hot project (a local repository with a session on this replica in
     * the last `hotMs`), at its HEAD, so its next session starts without cloning or setting up. */
    warmWorkspaces: number;
    hotMs: number;
    /** Workspaces with active sessions placed on one shard (and so one harness), kept well below
     * the point where one OpenCode server degrades (OPENCODE.md, "Load"). */
    workspacesPerHarness: number;
    /** A harness with no active session for this long is stopped (warm ones excepted). */
    idleMs: number;
    /** Recycle a harness (stop once idle) after it served this many sessions or grew past this. */
    maxSessionsPerHarness: number;
    recycleMemoryMb: number;
    tickMs: number;
    /** Replace a harness whose health check failed this many ticks in a row AND for this long: a
     * busy server on a loaded machine misses a 2 s probe now and then; a wedged one never answers. */
    healthFailures: number;
    healthGraceMs: number;
  };
  scheduler: {
    /** Sessions run by the scheduler at once, across every replica. */
    maxConcurrent: number;
    perProject: number;
    perToken: number;
    /** Queued tasks beyond this answer 429 with Retry-After. */
    maxQueued: number;
    retryAfterSeconds: number;
    /** The runtime's capacity: memoryBudgetMb / harnessMemoryMb harnesses at once. */
    memoryBudgetMb: number;
    harnessMemoryMb: number;
    leaseMs: number;
    pollMs: number;
    backoffBaseMs: number;
    backoffMaxMs: number;
    /** Off: this control plane claims no tasks (an API-only replica). */
    enabled: boolean;
  };
  terminal: {
    /** Started as a login shell (`-l`) in the session's workspace, through its runtime driver. */
    shell: string;
    /** A driver that drops keeps the lease this long, so a reconnect does not lose it. */
    graceMs: number;
    /** The shell is killed this long after its last client left. */
    idleMs: number;
  };
  bodyLimitBytes: number;
  /** Runs under vitest or a bench: no banner on stdout. */
  quiet: boolean;
}

export interface ConfigInputs {
  env: NodeJS.ProcessEnv;
  flags?: { host?: string; port?: number; config?: string; home?: string };
  /** Overrides applied last; tests use this instead of writing files. */
  overrides?: Partial<Config>;
}

// Keys OpenCode's bundled providers read. Any other *_API_KEY is passed through as well.
const KNOWN_KEYS = [
  "ANTHROPIC_API_KEY",
  "OPENAI_API_KEY",
  "OPENROUTER_API_KEY",
  "GOOGLE_GENERATIVE_AI_API_KEY",
  "GEMINI_API_KEY",
  "GROQ_API_KEY",
  "MISTRAL_API_KEY",
  "DEEPSEEK_API_KEY",
  "XAI_API_KEY",
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_REGION",
  "AZURE_API_KEY",
];

export function defaultOpencodeBin(): string {
  // The pinned binary from our own node_modules, never one found on PATH.
  return resolve(new URL("../../../../node_modules/.bin/opencode", import.meta.url).pathname);
}

function runtimeFromEnv(v: string | undefined): RuntimeName | undefined {
  if (v === undefined || v === "") return undefined;
  if ((RUNTIMES as readonly string[]).includes(v)) return v as RuntimeName;
  throw new FlotillaError(
    "invalid_request",
    `FLOTILLA_RUNTIME must be one of ${RUNTIMES.join(", ")}, got ${v}`,
    {
      field: "runtime",
    },
  );
}

/**
 * The config file, checked whole: every YAML syntax error, or else every field the schema refuses,
 * one line each as `file:line: field: why`, in one error (whose field is the first problem's). A
 * person fixing a file wants all of its problems at once, each where it is.
 */
export function parseConfigFile(path: string, text: string): FileConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  const problems: { line: number; field?: string; message: string }[] = doc.errors.map((e) => ({
    line: lines.linePos(e.pos[0]).line,
    // yaml's messages end in a code excerpt: the first line says what is wrong.
    message: e.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, ""),
  }));
  if (problems.length === 0) {
    const parsed = FileConfig.safeParse(doc.toJS() ?? {});
    if (parsed.success) return parsed.data;
    // The line of the deepest node the path reaches (a key that is missing has no line of its own).
    const lineOf = (path: PropertyKey[]) => {
      for (let n = path.length; n >= 0; n--) {
        const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n).map(String), true);
        if (isNode(node) && node.range) return lines.linePos(node.range[0]).line;
      }
      return 1;
    };
    for (const issue of parsed.error.issues) {
      const keys = issue.code === "unrecognized_keys" ? issue.keys : [undefined];
      for (const key of keys) {
        const at = key === undefined ? issue.path : [...issue.path, key];
        problems.push({
          line: lineOf(at),
          field: at.map(String).join(".") || undefined,
          message: key === undefined ? issue.message : "unknown field",
        });
      }
    }
  }
  problems.sort((a, b) => a.line - b.line);
  const list = problems.map((p) => `  ${path}:${p.line}: ${p.field ? `${p.field}: ` : ""}${p.message}`);
  throw new FlotillaError(
    "invalid_request",
    `the config file has ${problems.length === 1 ? "a problem" : `${problems.length} problems`}:\n${list.join("\n")}`,
    problems[0]?.field ? { field: problems[0].field } : undefined,
  );
}

function resolveForge(name: string, f: ForgeConfig, env: Record<string, string | undefined>): Forge {
  if (f.type === "gitea" && !f.apiUrl)
    throw new FlotillaError("invalid_request", `forges.${name}.apiUrl: a Gitea forge needs its API's URL`, {
      field: `forges.${name}.apiUrl`,
    });
  const apiUrl = (f.apiUrl ?? "https://api.github.com").replace(/\/+$/, "");
  const apiHost = new URL(apiUrl).host;
  let app: Forge["app"];
  if (f.app) {
    const key = f.app.privateKeyEnv ? env[f.app.privateKeyEnv] : readFileSync(f.app.privateKeyFile!, "utf8");
    if (!key)
      throw new FlotillaError("invalid_request", `forges.${name}.app: ${f.app.privateKeyEnv} is not set`, {
        field: `forges.${name}.app.privateKeyEnv`,
      });
    app = { id: String(f.app.id), privateKey: key };
  }
  return {
    name,
    type: f.type,
    apiUrl,
    hosts: f.hosts ?? [apiHost === "api.github.com" ? "github.com" : apiHost],
    token: f.tokenEnv ? env[f.tokenEnv] : undefined,
    app,
    webhookSecret: f.webhookSecretEnv ? env[f.webhookSecretEnv] : undefined,
    commandAssociations: f.commandAssociations ?? ["OWNER", "MEMBER", "COLLABORATOR"],
    labels: f.labels ?? [],
  };
}

/** `a=b,c=d` (OTEL_EXPORTER_OTLP_HEADERS), values URL-decoded as the OpenTelemetry spec says. */
function otlpHeaders(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of (text ?? "").split(",")) {
    const i = pair.indexOf("=");
    if (i <= 0) continue;
    out[pair.slice(0, i).trim()] = decodeURIComponent(pair.slice(i + 1).trim());
  }
  return out;
}

/**
 * The OTLP traces endpoint, by the OpenTelemetry variables first: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
 * is the full URL; OTEL_EXPORTER_OTLP_ENDPOINT (or config.yaml's `tracing.endpoint`) a base that
 * `/v1/traces` is appended to. OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turns it off.
 */
export function tracingConfig(
  env: Record<string, string | undefined>,
  file: FileConfig["tracing"],
): TracingConfig {
  const headers = {
    ...otlpHeaders(env.OTEL_EXPORTER_OTLP_HEADERS),
    ...otlpHeaders(env.OTEL_EXPORTER_OTLP_TRACES_HEADERS),
  };
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true" || env.OTEL_TRACES_EXPORTER?.trim() === "none")
    return { endpoint: undefined, headers };
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT || file?.endpoint;
  const endpoint =
    env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || (base ? `${base.replace(/\/+$/, "")}/v1/traces` : undefined);
  return { endpoint, headers };
}

/** The data directory: `--home`, else FLOTILLA_HOME, else ~/.flotilla; absolute. */
export function flotillaHome(env: Record<string, string | undefined>, flag?: string): string {
  return resolve(flag ?? env.FLOTILLA_HOME ?? join(homedir(), ".flotilla"));
}

/** The one place that reads the environment. Everything below receives a Config. */
export function loadConfig({ env, flags = {}, overrides = {} }: ConfigInputs): Config {
  const home = flotillaHome(env, flags.home);
  const configPath = flags.config ?? env.FLOTILLA_CONFIG ?? join(home, "config.yaml");
  let file: FileConfig = {};
  let text: string | undefined;
  try {
    text = readFileSync(configPath, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT" || flags.config) {
      throw new FlotillaError(
        "invalid_request",
        `cannot read config file ${configPath}: ${(e as Error).message}`,
      );
    }
  }
  if (text !== undefined) file = parseConfigFile(configPath, text);
  const providerEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v && (KNOWN_KEYS.includes(k) || /_API_KEY$/.test(k)) && !k.startsWith("FLOTILLA_"))
      providerEnv[k] = v;
  }
  for (const p of Object.values(file.providers ?? {})) {
    if (p.apiKeyEnv && env[p.apiKeyEnv]) providerEnv[p.apiKeyEnv] = env[p.apiKeyEnv]!;
  }
  const portText = flags.port ?? env.FLOTILLA_PORT;
  const config: Config = {
    home,
    replicaId:
      env.FLOTILLA_REPLICA ??
      `cp_${createHash("sha256").update(`${hostname()}:${home}`).digest("hex").slice(0, 16)}`,
    host: flags.host ?? env.FLOTILLA_HOST ?? file.host ?? "127.0.0.1",
    port: portText !== undefined ? Number(portText) : (file.port ?? 7700),
    databaseUrl: env.DATABASE_URL || file.databaseUrl,
    logLevel: env.FLOTILLA_LOG_LEVEL ?? file.logLevel ?? "info",
    defaultModel: env.FLOTILLA_MODEL ?? file.defaultModel,
    permission: file.permission ?? "ask",
    providers: file.providers ?? {},
    providerEnv,
    gateway: {
      host: file.gateway?.host ?? "127.0.0.1",
      port: file.gateway?.port,
      limits: file.gateway?.limits ?? {},
    },
    metricsToken: env.FLOTILLA_METRICS_TOKEN,
    masterKey: env.FLOTILLA_MASTER_KEY,
    masterKeyPrevious: env.FLOTILLA_MASTER_KEY_PREVIOUS,
    forges: Object.entries(file.forges ?? {}).map(([name, f]) => resolveForge(name, f, env)),
    git: {
      autoCommit: file.git?.autoCommit ?? "off",
      // Local paths as the sessions hold them: absolute.
      projects: Object.fromEntries(
        Object.entries(file.git?.projects ?? {}).map(([repo, v]) => [
          /^[\w+.-]+:|@/.test(repo) ? repo : resolve(repo),
          v,
        ]),
      ),
    },
    publicUrl: env.FLOTILLA_PUBLIC_URL ?? file.publicUrl,
    tracing: tracingConfig(env, file.tracing),
    demo: file.demo ?? (env.FLOTILLA_DEMO as Config["demo"] | undefined) ?? "auto",
    runtime: file.runtime ?? runtimeFromEnv(env.FLOTILLA_RUNTIME) ?? "sandbox",
    network: file.network ?? "allowlist",
    harness: {
      // Ready takes ~2-3 s on a quiet machine; a loaded one (other harnesses starting, tests, builds)
      // stretches it many times over, and a start cut short must begin again from nothing.
      readyTimeoutMs: file.harness?.readyTimeoutMs ?? 90_000,
      stopGraceMs: file.harness?.stopGraceMs ?? 5_000,
      healthIntervalMs: file.harness?.healthIntervalMs ?? 5_000,
      startAttempts: file.harness?.startAttempts ?? 3,
      opencodeBin: env.FLOTILLA_OPENCODE_BIN ?? defaultOpencodeBin(),
      npmCacheDir: env.FLOTILLA_NPM_CACHE ?? join(home, "cache", "npm"),
    },
    // 8 attempts from a 5 s base reach about 10 minutes of retrying.
    webhooks: {
      backoffBaseMs: file.webhooks?.backoffBaseMs ?? 5000,
      maxAttempts: file.webhooks?.maxAttempts ?? 8,
    },
    egress: {
      allow: [
        ...(file.egress?.allow ?? []),
        ...(env.FLOTILLA_EGRESS_ALLOW ?? "")
          .split(",")
          .map((x) => x.trim())
          .filter(Boolean),
      ],
    },
    pool: {
      warm: file.pool?.warm ?? 1,
      warmWorkspaces: file.pool?.warmWorkspaces ?? 1,
      hotMs: file.pool?.hotMs ?? 30 * 60_000,
      workspacesPerHarness: file.pool?.workspacesPerHarness ?? 8,
      idleMs: file.pool?.idleMs ?? 5 * 60_000,
      maxSessionsPerHarness: file.pool?.maxSessionsPerHarness ?? 200,
      recycleMemoryMb: file.pool?.recycleMemoryMb ?? 3072,
      tickMs: 2000,
      healthFailures: 3,
      healthGraceMs: 30_000,
    },
    scheduler: {
      maxConcurrent: file.scheduler?.maxConcurrent ?? 4,
      perProject: file.scheduler?.perProject ?? 4,
      perToken: file.scheduler?.perToken ?? 4,
      maxQueued: file.scheduler?.maxQueued ?? 10_000,
      retryAfterSeconds: 5,
      memoryBudgetMb: file.scheduler?.memoryBudgetMb ?? 8192,
      harnessMemoryMb: file.scheduler?.harnessMemoryMb ?? 700,
      leaseMs: file.scheduler?.leaseMs ?? 30_000,
      pollMs: 1000,
      backoffBaseMs: 1000,
      backoffMaxMs: 60_000,
      enabled: env.FLOTILLA_SCHEDULER !== "off",
    },
    terminal: {
      // bash, not the control plane's $SHELL: the shell runs in the sandbox, where only the system's are.
      shell: "bash",
      graceMs: 5000,
      idleMs: 5 * 60_000,
    },
    bodyLimitBytes: 1024 * 1024,
    quiet: false,
    ...overrides,
  };
  if (!Number.isInteger(config.port) || config.port < 0 || config.port > 65535) {
    throw new FlotillaError("invalid_request", `port must be 0..65535, got ${portText}`, { field: "port" });
  }
  if (!isAbsolute(config.home)) config.home = resolve(config.home);
  return config;
}
