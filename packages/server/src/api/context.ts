import type { ModelCatalog } from "../agents/opencode/catalog.ts";
import { type AuditContext, AuditLog } from "../audit/audit.ts";
import type { Config } from "../config/config.ts";
import type { HarnessManager } from "../harnesses/manager.ts";
import { type Principal, requireAdmin } from "../identity/principal.ts";
import type { TokenService } from "../identity/tokens.ts";
import type { ForgeCommands } from "../integrations/forge-commands.ts";
import type { Forges } from "../integrations/forges/forge.ts";
import type { WebhookService } from "../integrations/webhooks.ts";
import type { Metrics } from "../metrics/prometheus.ts";
import type { DbHealth } from "../platform/db/health.ts";
import type { Db } from "../platform/db/pool.ts";
import type { EventBus } from "../platform/events/bus.ts";
import type { EventLog } from "../platform/events/log.ts";
import type { Logger } from "../platform/logger.ts";
import type { SecretStore } from "../secrets/store.ts";
import type { SessionService } from "../sessions/sessions.ts";
import type { Scheduler } from "../tasks/scheduler.ts";
import type { TaskService } from "../tasks/tasks.ts";
import type { LandingService } from "../workspaces/land.ts";
import type { Leftovers } from "../workspaces/leftovers.ts";
import type { WarmWorkspaces } from "../workspaces/warm-workspaces.ts";

export interface Services {
  config: Config;
  db: Db;
  log: Logger;
  sessions: SessionService;
  landing: LandingService;
  leftovers: Leftovers;
  warmWorkspaces: WarmWorkspaces;
  forges: Forges;
  forgeCommands: ForgeCommands;
  tasks: TaskService;
  scheduler: Scheduler;
  tokens: TokenService;
  webhooks: WebhookService;
  harnesses: HarnessManager;
  bus: EventBus;
  events: EventLog;
  demoProvider: string | undefined;
  models: ModelCatalog;
  /** Prometheus metrics, and the token that scrapes them. */
  metrics: Metrics;
  metricsToken: string;
  secrets: SecretStore;
  /** Re-reads the provider keys (environment and store) and hands them to the model gateway. */
  refreshProviderKeys(): Promise<void>;
  isReady(): boolean;
  /** Whether the database answers, as the control plane last found it (`/readyz`). */
  dbHealth?: DbHealth;
}

export type Env = { Variables: { principal: Principal; requestId: string; ip: string | null } };

/** Who is acting in this request, and from where, as the audit log records it. */
export function auditContext(c: {
  get: <K extends keyof Env["Variables"]>(k: K) => Env["Variables"][K];
}): AuditContext {
  const p = c.get("principal");
  return { orgId: p.orgId, actor: p.tokenId, requestId: c.get("requestId"), ip: c.get("ip") };
}

/**
 * An admin-only action: a member's attempt is refused (403) and is on record as `denied`, under
 * the action it tried, so the log shows who tried what they may not do.
 */
export async function adminFor(
  c: { get: <K extends keyof Env["Variables"]>(k: K) => Env["Variables"][K] },
  s: Pick<Services, "db">,
  action: string,
  target?: { type: string; id: string },
): Promise<Principal> {
  const p = c.get("principal");
  if (p.role !== "admin")
    await AuditLog.record(s.db, auditContext(c), {
      action,
      outcome: "denied",
      ...(target ? { targetType: target.type, targetId: target.id } : {}),
      detail: { reason: "needs an admin token" },
    });
  requireAdmin(p);
  return p;
}
