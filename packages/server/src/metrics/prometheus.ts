import { randomBytes, timingSafeEqual } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { Db } from "../platform/db/pool.ts";
import type { Timings } from "../platform/timings.ts";

type Labels = Record<string, string | number>;

/**
 * A counter whose value is read from the database at each scrape (the gateway's calls are recorded
 * there by its own process, and by every replica's): the total so far, so it only grows, and
 * `rate()` works on it as on any counter. Every replica reports the same totals; query one.
 */
function dbCounter(
  registry: Registry,
  name: string,
  help: string,
  labelNames: string[],
  read: () => Promise<{ labels: Labels; value: number }[]>,
): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    async collect() {
      const rows = await read();
      this.reset();
      for (const r of rows) if (r.value > 0) this.inc(r.labels, r.value);
    },
  });
}

function dbGauge(
  registry: Registry,
  name: string,
  help: string,
  labelNames: string[],
  read: () => Promise<{ labels: Labels; value: number }[]>,
): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    async collect() {
      const rows = await read();
      this.reset();
      for (const r of rows) this.set(r.labels, r.value);
    },
  });
}

/**
 * Flotilla's Prometheus metrics (prom-client): the process's own, HTTP requests by route and
 * status and the latencies of `Timings` (claims, provisioning, event lag), observed here as they
 * happen (so per replica: sum them across replicas), and the platform's state read from Postgres
 * at each scrape: sessions, the queue, harnesses, gateway calls, tokens, cost and budget refusals,
 * webhook deliveries (the same on every replica: query one).
 */
export class Metrics implements Timings {
  readonly registry = new Registry();
  readonly httpRequests: Counter;
  readonly httpSeconds: Histogram;
  private readonly claimSeconds: Histogram;
  private readonly provisioningSeconds: Histogram;
  private readonly provisioningFailures: Counter;
  private readonly storeLag: Histogram;
  private readonly deliveryLag: Histogram;

  constructor(db: Db) {
    const r = this.registry;
    collectDefaultMetrics({ register: r, prefix: "flotilla_" });
    this.httpRequests = new Counter({
      name: "flotilla_http_requests_total",
      help: "HTTP requests served, by method, route and status",
      labelNames: ["method", "route", "status"],
      registers: [r],
    });
    this.httpSeconds = new Histogram({
      name: "flotilla_http_request_duration_seconds",
      help: "HTTP request duration (to the response's headers; a stream counts until it starts)",
      labelNames: ["method", "route"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [r],
    });
    this.claimSeconds = new Histogram({
      name: "flotilla_task_claim_seconds",
      help: "How long a claimed task waited, from becoming claimable (available_at: submitted, or its retry's back-off over) to the claim (database clock); one per claim by this replica",
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
      registers: [r],
    });
    this.provisioningSeconds = new Histogram({
      name: "flotilla_session_provisioning_seconds",
      help: "A session's provisioning, from its start (created, or started again) to ready for its prompt (harness up, agent session made, directory set up; a wait for a harness slot included), by runtime; one per session provisioned by this replica",
      labelNames: ["runtime"],
      buckets: [0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300],
      registers: [r],
    });
    this.provisioningFailures = new Counter({
      name: "flotilla_session_provisioning_failures_total",
      help: "Session provisionings that ended failed, by runtime",
      labelNames: ["runtime"],
      registers: [r],
    });
    this.storeLag = new Histogram({
      name: "flotilla_event_store_lag_seconds",
      help: "From a harness event read off its stream to its log events committed (waiting behind earlier frames and in the session's write queue included); one per harness event that added to the log, however many events it made",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [r],
    });
    this.deliveryLag = new Histogram({
      name: "flotilla_event_delivery_lag_seconds",
      help: "From an event's commit to its write to a client's stream (SSE), per event and stream; live events this replica stored only (replays and other replicas' events are not counted)",
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [r],
    });
    const q = async (sql: string) => (await db.query(sql)).rows;
    dbGauge(r, "flotilla_sessions", "Sessions by status (deleted ones left out)", ["status"], async () =>
      (
        await q("select status, count(*)::int as n from sessions where deleted_at is null group by status")
      ).map((x) => ({ labels: { status: x.status }, value: x.n })),
    );
    dbGauge(r, "flotilla_tasks", "Tasks by state", ["state"], async () =>
      (await q("select state, count(*)::int as n from tasks group by state")).map((x) => ({
        labels: { state: x.state },
        value: x.n,
      })),
    );
    dbGauge(
      r,
      "flotilla_queue_oldest_seconds",
      "How long the oldest task that could run now has waited",
      [],
      async () =>
        (
          await q(
            "select coalesce(extract(epoch from now() - min(available_at)), 0)::float8 as s from tasks where state = 'queued' and available_at <= now()",
          )
        ).map((x) => ({ labels: {}, value: x.s })),
    );
    dbGauge(r, "flotilla_harnesses", "Harnesses by runtime and state", ["runtime", "state"], async () =>
      (
        await q(
          "select driver, state, count(*)::int as n from harnesses where state in ('starting', 'ready', 'stopping') group by driver, state",
        )
      ).map((x) => ({ labels: { runtime: x.driver, state: x.state }, value: x.n })),
    );
    dbGauge(
      r,
      "flotilla_harness_rss_bytes",
      "Memory of the live harnesses, by runtime (last sample)",
      ["runtime"],
      async () =>
        (
          await q(
            "select driver, coalesce(sum(rss_bytes), 0)::float8 as b from harnesses where state in ('starting', 'ready') group by driver",
          )
        ).map((x) => ({ labels: { runtime: x.driver }, value: x.b })),
    );
    dbGauge(r, "flotilla_webhook_deliveries", "Webhook deliveries by status", ["status"], async () =>
      (await q("select status, count(*)::int as n from webhook_deliveries group by status")).map((x) => ({
        labels: { status: x.status },
        value: x.n,
      })),
    );
    // One read of the gateway's calls serves the four counters below within a scrape.
    // biome-ignore lint/suspicious/noExplicitAny: pg's rows, typed by the query's own columns below
    let shared: { at: number; rows: Promise<any[]> } | undefined;
    const calls = () => {
      if (!shared || Date.now() - shared.at > 1000) shared = { at: Date.now(), rows: readCalls() };
      return shared.rows;
    };
    const readCalls = () =>
      q(`select coalesce(project_id, '') as project, provider, coalesce(model, '') as model, status,
                count(*)::float8 as n, sum(input_tokens)::float8 as input, sum(output_tokens)::float8 as output,
                sum(cached_tokens)::float8 as cached, sum(cost_usd)::float8 as cost,
                sum(latency_ms)::float8 / 1000 as seconds
           from gateway_calls group by 1, 2, 3, 4`);
    dbCounter(
      r,
      "flotilla_gateway_calls_total",
      "Model calls through the gateway, by project, provider, model and HTTP status",
      ["project", "provider", "model", "status"],
      async () =>
        (await calls()).map((x) => ({
          labels: { project: x.project, provider: x.provider, model: x.model, status: x.status },
          value: x.n,
        })),
    );
    dbCounter(
      r,
      "flotilla_gateway_tokens_total",
      "Model tokens through the gateway, by project, model and kind (input, output, cached)",
      ["project", "model", "kind"],
      async () =>
        (await calls()).flatMap((x) =>
          (["input", "output", "cached"] as const).map((kind) => ({
            labels: { project: x.project, model: `${x.provider}/${x.model}`, kind },
            value: x[kind],
          })),
        ),
    );
    dbCounter(
      r,
      "flotilla_gateway_cost_usd_total",
      "What the gateway's calls cost (the model's price from config), by project and model",
      ["project", "model"],
      async () =>
        (await calls()).map((x) => ({
          labels: { project: x.project, model: `${x.provider}/${x.model}` },
          value: x.cost,
        })),
    );
    dbCounter(
      r,
      "flotilla_gateway_call_seconds_total",
      "Time spent in model calls through the gateway (divide by calls for the mean)",
      ["project", "model"],
      async () =>
        (await calls()).map((x) => ({
          labels: { project: x.project, model: `${x.provider}/${x.model}` },
          value: x.seconds,
        })),
    );
    dbCounter(
      r,
      "flotilla_gateway_budget_refusals_total",
      "Model calls the gateway refused because a budget was reached, by project",
      ["project"],
      async () =>
        (
          await q(
            "select coalesce(project_id, '') as project, count(*)::float8 as n from gateway_calls where status = 402 group by 1",
          )
        ).map((x) => ({ labels: { project: x.project }, value: x.n })),
    );
  }

  taskClaimed(seconds: number): void {
    this.claimSeconds.observe(seconds);
  }

  sessionProvisioned(runtime: string, seconds: number): void {
    this.provisioningSeconds.observe({ runtime }, seconds);
    // The runtime's failure series starts at 0, so the first failure shows in increase().
    this.provisioningFailures.inc({ runtime }, 0);
  }

  sessionProvisioningFailed(runtime: string): void {
    this.provisioningFailures.inc({ runtime });
  }

  eventStored(seconds: number): void {
    this.storeLag.observe(seconds);
  }

  eventDelivered(seconds: number): void {
    this.deliveryLag.observe(seconds);
  }

  async scrape(): Promise<{ body: string; contentType: string }> {
    return { body: await this.registry.metrics(), contentType: this.registry.contentType };
  }
}

/**
 * The scrape token: FLOTILLA_METRICS_TOKEN, else `<home>/metrics.token`, made (0600) at first boot.
 * Only `/metrics` takes it; it opens nothing else.
 */
export function scrapeToken(home: string, fromEnv: string | undefined): string {
  if (fromEnv) return fromEnv;
  const file = join(home, "metrics.token");
  if (!existsSync(file))
    writeFileSync(file, `fls_${randomBytes(24).toString("base64url")}\n`, { mode: 0o600 });
  return readFileSync(file, "utf8").trim();
}

export function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
