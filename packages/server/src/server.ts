import type { Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { newId } from "@flotilla/contracts";
import { demoScenario, type ScriptedModelServer, startScriptedModel } from "@flotilla/scripted-model";
import { serve } from "@hono/node-server";
import { ModelCatalog } from "./agents/opencode/catalog.ts";
import { createApp } from "./api/app.ts";
import type { Services } from "./api/context.ts";
import { attachTerminalSocket } from "./api/sockets/terminal.ts";
import type { Config } from "./config/config.ts";
import { GatewaySupervisor } from "./gateway/supervisor.ts";
import { providerKeyNames, UNFRONTED_ENV } from "./gateway/upstreams.ts";
import { HarnessManager } from "./harnesses/manager.ts";
import { HarnessPool } from "./harnesses/pool.ts";
import { DEFAULT_ORG, TokenService } from "./identity/tokens.ts";
import { WebSessionService } from "./identity/web-sessions.ts";
import { ForgeCommands } from "./integrations/forge-commands.ts";
import { Forges } from "./integrations/forges/forge.ts";
import { moveWebhookSecrets, WebhookService } from "./integrations/webhooks.ts";
import { Metrics, scrapeToken } from "./metrics/prometheus.ts";
import { type EmbeddedDb, startEmbeddedPostgres } from "./platform/db/embedded.ts";
import { DbHealth } from "./platform/db/health.ts";
import { migrate } from "./platform/db/migrate.ts";
import { createPool } from "./platform/db/pool.ts";
import { EventBus } from "./platform/events/bus.ts";
import { EventLog } from "./platform/events/log.ts";
import { egressPolicy } from "./platform/http/egress.ts";
import { hostForUrl } from "./platform/http/host.ts";
import type { Logger } from "./platform/logger.ts";
import { registerSecret } from "./platform/redact.ts";
import { startTracing } from "./platform/tracing.ts";
import { runtimeDrivers } from "./runtime/registry.ts";
import { Keyring, SecretStore } from "./secrets/store.ts";
import { SessionIngest } from "./sessions/ingest.ts";
import { SessionService } from "./sessions/sessions.ts";
import { TurnOwner } from "./sessions/turns.ts";
import { Scheduler } from "./tasks/scheduler.ts";
import { TaskService } from "./tasks/tasks.ts";
import { TerminalService } from "./terminals/terminals.ts";
import { LandingService } from "./workspaces/land.ts";
import { Leftovers } from "./workspaces/leftovers.ts";
import { WarmWorkspaces } from "./workspaces/warm-workspaces.ts";

export interface RunningServer {
  url: string;
  port: number;
  services: Services;
  /** Set on first boot only: the admin token, to be shown once. */
  adminToken: string | undefined;
  close(): Promise<void>;
}

export const DEMO_PROVIDER = "demo";

/** True when nothing would let a session reach a real model: then the scripted demo model stands in. */
function wantsDemo(config: Config): boolean {
  if (config.demo !== "auto") return config.demo === "on";
  return (
    Object.keys(config.providers).length === 0 &&
    Object.keys(config.providerEnv).length === 0 &&
    !config.defaultModel
  );
}

const registered = (secret: string) => {
  registerSecret(secret);
  return secret;
};

function closeServer(server: ReturnType<typeof serve>): Promise<void> {
  return new Promise<void>((res) => {
    (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
    server.close(() => res());
  });
}

/** Boots the control plane: database, migrations, recovery of the previous run, then HTTP. */
export async function startFlotilla(config: Config, log: Logger): Promise<RunningServer> {
  const cleanups: (() => Promise<void>)[] = [];
  const cleanup = async () => {
    for (const fn of cleanups.reverse())
      await fn().catch((err) => log.error({ err }, "shutdown step failed"));
  };
  try {
    // Every secret this process holds is known to the redaction of logs and events from here on.
    for (const v of Object.values(config.providerEnv)) registerSecret(v);
    for (const f of config.forges)
      for (const v of [f.token, f.webhookSecret, f.app?.privateKey]) registerSecret(v);
    registerSecret(config.metricsToken);
    for (const v of Object.values(config.tracing.headers)) registerSecret(v);
    // First in, so last out: the spans of everything shut down after it are flushed.
    const tracing = startTracing(config.tracing, log);
    cleanups.push(() => tracing.stop());
    // First: a runtime that cannot run (bubblewrap missing) stops the boot before anything starts.
    const drivers = runtimeDrivers(config, log);
    let url = config.databaseUrl;
    let embedded: EmbeddedDb | undefined;
    if (!url) {
      const pg: EmbeddedDb = await startEmbeddedPostgres(config.home, log);
      cleanups.push(() => pg.stop());
      url = pg.url;
      embedded = pg;
    }
    // Any connection error marks the database away until a probe answers; the embedded Postgres is
    // ours, so it is started again when it died (an external one is only waited for).
    let health: DbHealth | undefined;
    const db = createPool(url, 20, (err) => health?.report(err));
    cleanups.push(() => db.end());
    health = new DbHealth(db, log.child({ component: "db" }), {
      repair: embedded ? () => embedded.revive() : undefined,
    });
    const dbHealth = health;
    await migrate(db, log);

    // The secret store, and the provider keys in it: they join (and beat) those from the environment.
    registerSecret(config.masterKey);
    const secrets = new SecretStore(
      db,
      Keyring.load(config.home, { current: config.masterKey, previous: config.masterKeyPrevious }),
      log.child({ component: "secrets" }),
    );
    await secrets.rewrapStale();
    await moveWebhookSecrets(db, secrets, log.child({ component: "webhooks" }));
    const envKeys = { ...config.providerEnv };
    const readProviderKeys = async () => {
      config.providerEnv = {
        ...envKeys,
        ...(await secrets.revealOrg(DEFAULT_ORG, providerKeyNames(config))),
      };
      config.projectProviderKeys = await secrets.revealProjects(DEFAULT_ORG, providerKeyNames(config));
    };
    await readProviderKeys();

    let demo: ScriptedModelServer | undefined;
    if (wantsDemo(config)) {
      demo = await startScriptedModel({ scenario: demoScenario, record: false });
      cleanups.push(() => demo!.close());
      config.providers = {
        ...config.providers,
        [DEMO_PROVIDER]: {
          name: "Flotilla demo (scripted replies, not an LLM)",
          baseURL: demo.url,
          models: { "scripted-1": { name: "Demo: scripted", toolCall: true } },
        },
      };
      config.defaultModel ??= `${DEMO_PROVIDER}/scripted-1`;
      log.warn(
        "no model provider configured: using the scripted demo model (set ANTHROPIC_API_KEY or add providers to config.yaml)",
      );
    }

    config.warmup = undefined;
    if (config.pool.warmWorkspaces > 0) {
      // Answers a warm workspace's throwaway first turn at once, on loopback: what a first prompt in
      // a new directory spends before it asks the model is spent then, not by the session's prompt.
      const warmup = await startScriptedModel({
        scenario: { rules: [], default: [{ text: "ok" }] },
        record: false,
      });
      cleanups.push(() => warmup.close());
      config.warmup = { baseURL: warmup.url };
    }

    // The model gateway runs before any harness starts or is adopted: each is configured with its
    // address. A process of its own (a control-plane crash does not cut a model answer mid-stream)
    // on a port of its own (a sandbox's allowlist lets out the gateway and not the API).
    const gateway = new GatewaySupervisor(db, config, url, log.child({ component: "gateway" }));
    config.gateway.url = await gateway.start();
    cleanups.push(() => gateway.stop());
    for (const k of Object.keys(config.providerEnv).filter((k) => UNFRONTED_ENV.test(k)))
      log.warn(
        { variable: k },
        "this provider cannot be fronted by the model gateway: its variable reaches harnesses",
      );

    const tokens = new TokenService(db);
    await tokens.ensureDefaultOrg();
    const adminToken = await tokens.bootstrapAdmin(config.home);

    const instance = newId("hrn").replace("hrn_", "cp_");
    const bus = new EventBus(db, instance, log.child({ component: "bus" }));
    await bus.start();
    cleanups.push(() => bus.stop());
    const tasks = new TaskService(db, config);
    // Every task transition reaches the activity feed of every replica (UIs refresh from it).
    tasks.onTransition((t) => bus.publishTask({ id: t.task.id, state: t.to }));
    // Started before recovery and pushed before the session and scheduler cleanups (so it stops
    // after them): the changes they make at boot and at shutdown still reach the outbox.
    const webhooks = new WebhookService(db, tasks, bus, log.child({ component: "webhooks" }), secrets, {
      ...config.webhooks,
      egress: egressPolicy(config),
    });
    webhooks.start();
    cleanups.push(() => webhooks.stop());
    const metrics = new Metrics(db);
    const events = new EventLog(db, bus, metrics, dbHealth);
    // Runs after the sessions' own shutdown (cleanups run last first): their last events land.
    cleanups.push(() => events.idle());
    // The ingest first: the manager gets the harness events it delivers in its constructor.
    const ingest = new SessionIngest(
      db,
      events,
      log.child({ component: "ingest" }),
      new TurnOwner(db, events),
    );
    // A harness event met while the database is away is handled again once it is back (appends
    // wait in the log's queue, platform/events/log.ts; a turn's end or a reconcile runs again):
    // frames wait in order behind it, so the session's log stays complete and in order.
    const again = <T>(fn: () => Promise<T>) => dbHealth.retrying(fn);
    const harnesses = new HarnessManager(db, drivers, config, log.child({ component: "harnesses" }), {
      onEvent: (h, dir, payload, at) => again(() => ingest.onEvent(h, dir, payload, at)),
      onConnected: (h) => again(() => ingest.reconcile(h)),
      onLost: (h, reason) => again(() => ingest.onLost(h, reason)),
      onState: (h, state, reason) => again(() => ingest.onState(h, state, reason)),
    });
    const warmWorkspaces = new WarmWorkspaces(
      db,
      harnesses,
      config,
      log.child({ component: "warm-workspaces" }),
    );
    const sessions = new SessionService(
      db,
      events,
      harnesses,
      config,
      log.child({ component: "sessions" }),
      ingest,
      warmWorkspaces,
      metrics,
    );
    cleanups.push(async () => {
      await ingest.interruptAll(config.replicaId, "control plane shut down");
      await harnesses.stopAll("control plane shut down");
    });
    const forges = new Forges(config.forges);
    const landing = new LandingService(
      db,
      sessions,
      events,
      log.child({ component: "landing" }),
      forges,
      config,
    );
    const unwatch = landing.watch(bus);
    cleanups.push(async () => unwatch());
    const scheduler = new Scheduler(
      db,
      tasks,
      sessions,
      bus,
      config,
      log.child({ component: "scheduler" }),
      config.replicaId,
      landing,
      metrics,
    );
    await harnesses.adoptAll();
    await ingest.recoverOrphans(config.replicaId, (shard) => harnesses.forShard(shard) !== undefined);
    const pool = new HarnessPool(db, harnesses, config, log.child({ component: "pool" }));
    pool.start();
    cleanups.push(() => pool.stop());
    warmWorkspaces.start();
    cleanups.push(() => warmWorkspaces.stop());

    if (config.scheduler.enabled) {
      await scheduler.start();
      // Pushed after the session cleanup, so it runs before it: hand running tasks back first.
      cleanups.push(() => scheduler.stop());
    }

    let ready = false;
    const services: Services = {
      config,
      db,
      log,
      sessions,
      landing,
      forges,
      forgeCommands: new ForgeCommands(db, forges, tasks, log.child({ component: "forges" })),
      leftovers: new Leftovers(db, config, log.child({ component: "leftovers" })),
      warmWorkspaces,
      tasks,
      scheduler,
      tokens,
      webhooks,
      harnesses,
      bus,
      events,
      demoProvider: demo ? DEMO_PROVIDER : undefined,
      models: new ModelCatalog(config, harnesses, demo ? DEMO_PROVIDER : undefined),
      metrics,
      metricsToken: registered(scrapeToken(config.home, config.metricsToken)),
      secrets,
      // A provider key changed in the store: new harnesses see the provider, the gateway its key.
      refreshProviderKeys: async () => {
        await readProviderKeys();
        await gateway.pushUpstreams();
      },
      isReady: () => ready,
      dbHealth,
    };
    const app = createApp(services);
    const server = await new Promise<ReturnType<typeof serve>>((res, rej) => {
      const s = serve({ fetch: app.fetch, hostname: config.host, port: config.port }, () => res(s));
      s.once("error", rej);
    });
    const port = (server.address() as AddressInfo).port;
    cleanups.push(() => closeServer(server));
    // Pushed after the HTTP server's cleanup, so it runs first: shells killed, lease events stored
    // while the database is still there, and upgraded sockets (which server.close ignores) closed.
    const terminals = new TerminalService(
      config.terminal,
      events,
      bus,
      log.child({ component: "terminals" }),
    );
    const terminalSocket = attachTerminalSocket(server as HttpServer, services, terminals, {
      webSessions: new WebSessionService(db),
    });
    cleanups.push(async () => {
      terminalSocket.close();
      await terminals.stop();
    });
    // Pushed last, so it runs first: from the shutdown on, work fails rather than wait for a
    // database that is away, and the embedded Postgres is no longer started again.
    cleanups.push(async () => dbHealth.stop());
    ready = true;
    const base = `http://${hostForUrl(config.host)}:${port}`;
    log.info({ url: base, org: DEFAULT_ORG }, "flotilla listening");
    let closing: Promise<void> | undefined;
    return {
      url: base,
      port,
      services,
      adminToken,
      close: () => {
        ready = false;
        closing ??= cleanup();
        return closing;
      },
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
