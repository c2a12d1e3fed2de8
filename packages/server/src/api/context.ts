import type { Config } from "../config.ts";
import type { HarnessManager } from "../core/harnesses.ts";
import type { Scheduler } from "../core/scheduler.ts";
import type { Principal, SessionService } from "../core/sessions.ts";
import type { TaskService } from "../core/tasks.ts";
import type { TokenService } from "../core/tokens.ts";
import type { WebhookService } from "../core/webhooks.ts";
import type { Db } from "../db/pool.ts";
import type { EventBus } from "../events/bus.ts";
import type { EventLog } from "../events/log.ts";
import type { Logger } from "../logger.ts";

export interface Services {
  config: Config;
  db: Db;
  log: Logger;
  sessions: SessionService;
  tasks: TaskService;
  scheduler: Scheduler;
  tokens: TokenService;
  webhooks: WebhookService;
  harnesses: HarnessManager;
  bus: EventBus;
  events: EventLog;
  demoProvider: string | undefined;
  isReady(): boolean;
}

export type Env = { Variables: { principal: Principal } };
