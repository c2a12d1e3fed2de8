import type { BudgetName, EventData } from "@flotilla/contracts";
import { enqueueBudgetWarning } from "../integrations/webhooks.ts";
import type { Db } from "../platform/db/pool.ts";
import { EventBus } from "../platform/events/bus.ts";
import { EventLog } from "../platform/events/log.ts";
import type { Logger } from "../platform/logger.ts";

export type BudgetWarning = EventData<"budget.warning">;

/**
 * What the gateway says when a budget in `warn` mode is crossed: a `budget.warning` event in the
 * session's log and its webhook deliveries. The gateway writes the event the way any replica does
 * (the session row's lock orders it among the control plane's own appends) and announces it on the
 * same NOTIFY channel, so every control plane streams it to the session's clients at once.
 */
export class BudgetWarnings {
  private readonly events: EventLog;
  private readonly bus: EventBus;

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
  ) {
    // Never started: the gateway publishes (NOTIFY) and listens to nothing.
    this.bus = new EventBus(db, `gateway-${process.pid}`, log);
    this.events = new EventLog(db, this.bus);
  }

  async warn(sessionId: string, w: BudgetWarning): Promise<void> {
    try {
      const [e] = await this.events.append(sessionId, [{ type: "budget.warning", data: w }]);
      if (e?.type === "budget.warning") await enqueueBudgetWarning(this.db, e);
      this.log.info({ session: sessionId, task: w.taskId, budget: w.budget }, "gateway: budget warning");
    } catch (err) {
      this.log.error(
        { err, session: sessionId, budget: w.budget },
        "gateway: a budget warning was not stored",
      );
    }
  }

  /** Everything queued written (the gateway stopping). */
  idle(): Promise<void> {
    return this.events.idle();
  }
}

export const BUDGET_UNIT: Record<BudgetName, "usd" | "tokens"> = {
  maxCostUsd: "usd",
  maxTokens: "tokens",
  projectDailyUsd: "usd",
  tokenDailyUsd: "usd",
};
