import { createHmac, randomBytes } from "node:crypto";
import type { LookupAddress } from "node:dns";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import {
  type BudgetWarningPayload,
  type CreatedWebhook,
  type CreateWebhookBody,
  CreateWebhookBody as CreateWebhookSchema,
  DEFAULT_WEBHOOK_EVENTS,
  type DeliveryPage,
  type DeliveryStatus,
  FlotillaError,
  newId,
  type SessionEvent,
  type SessionStatusPayload,
  WEBHOOK_HEADERS,
  type Webhook,
  type WebhookDelivery,
  type WebhookSecret,
} from "@flotilla/contracts";
import { type AuditContext, AuditLog, actorOf } from "../audit/audit.ts";
import type { Principal } from "../identity/principal.ts";
import { backoffMs } from "../platform/backoff.ts";
import { logLoopError } from "../platform/db/health.ts";
import { type Db, withTx } from "../platform/db/pool.ts";
import type { EventBus } from "../platform/events/bus.ts";
import {
  checkHost,
  checkRequestUrl,
  EgressAllow,
  type EgressPolicy,
  EgressRefused,
  pinnedLookup,
} from "../platform/http/egress.ts";
import type { Logger } from "../platform/logger.ts";
import type { SecretStore } from "../secrets/store.ts";
import type { TaskService, TaskTransition } from "../tasks/tasks.ts";

// biome-ignore lint/suspicious/noExplicitAny: database rows
type Row = Record<string, any>;

/*
 * Design.
 * - Subscriptions are explicit (POST /webhooks, per project or for the whole organisation) or
 *   implicit: a task's own `webhook` URL receives that task's transitions. Explicit ones are signed
 *   with their own secret (shown once, at creation). Implicit ones are signed with one secret per
 *   organisation, made on first use and readable by admins (GET /webhooks/secret): a task submit
 *   has no response field to hand a fresh secret back once, and a per-task secret would have to be
 *   fetched per task by whoever verifies.
 * - Enqueue happens after commit, from TaskService.onTransition and the event bus, into the
 *   `webhook_deliveries` outbox. Task transitions are published only by the replica that made them;
 *   session events reach every replica (NOTIFY), so those rows carry a dedupe key and the first
 *   insert wins. A crash between a commit and its enqueue loses that event's deliveries: the price
 *   of not writing the outbox row inside the transition's own transaction.
 * - Each control plane runs one dispatcher. It claims due rows with FOR UPDATE SKIP LOCKED and
 *   leases them by pushing next_attempt_at forward, so the send happens outside any transaction and
 *   a replica that dies mid-send only delays the row until its lease runs out. Delivery is at least
 *   once: receivers dedupe on x-flotilla-delivery.
 * - Rows to one URL go out one at a time in creation order (a lane), so a healthy receiver sees a
 *   task's transitions in order. A retried row can still arrive after later ones: the body's task
 *   JSON carries `updatedAt` for receivers that must order strictly.
 */

export interface WebhookOptions {
  /** Retry n waits base·2^(n−1) (capped at max), scaled by a random 50–100 %. */
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** After this many attempts without a 2xx the delivery is `failed`. */
  maxAttempts: number;
  timeoutMs: number;
  /** Sends in flight at once on this replica. */
  concurrency: number;
  /** Longest sleep between looks at the outbox (new rows from this replica wake it at once). */
  pollMs: number;
  /** Which destinations may be sent to (checked at subscription and again at every attempt). */
  egress: EgressPolicy;
}

export const DEFAULT_WEBHOOK_OPTIONS: WebhookOptions = {
  backoffBaseMs: 1000,
  backoffMaxMs: 3600_000,
  maxAttempts: 8,
  timeoutMs: 10_000,
  concurrency: 8,
  pollMs: 5000,
  egress: { allow: new EgressAllow([]) },
};

const webhookId = () => newId("whk");
const deliveryId = () => newId("dlv");
const newSecret = () => `whsec_${randomBytes(32).toString("base64url")}`;

/**
 * Signing secrets live in the secret store (secrets/store.ts), org-scoped, under these names: one
 * per subscription, and the organisation's for tasks' own webhook URLs.
 */
const SUBSCRIPTION_SECRET_PREFIX = "webhook.";
const subscriptionSecretName = (id: string) => `${SUBSCRIPTION_SECRET_PREFIX}${id}`;
const ORG_SECRET_NAME = "webhook.org";

/**
 * Signing secrets kept in plain text by an older Flotilla (webhook_subscriptions.secret,
 * webhook_secrets.secret) moved into the secret store and blanked, at boot after the migrations
 * (sealing needs the master key, which SQL does not have). Each row is stored, then blanked: a crash
 * between the two stores the same value again next time.
 */
export async function moveWebhookSecrets(db: Db, secrets: SecretStore, log: Logger): Promise<number> {
  let moved = 0;
  const subs = await db.query(
    "select id, org_id, secret from webhook_subscriptions where secret is not null",
  );
  for (const r of subs.rows) {
    await secrets.set(r.org_id, null, subscriptionSecretName(r.id), r.secret);
    await db.query("update webhook_subscriptions set secret = null where id = $1", [r.id]);
    moved++;
  }
  const orgs = await db.query("select org_id, secret from webhook_secrets where secret is not null");
  for (const r of orgs.rows) {
    await secrets.set(r.org_id, null, ORG_SECRET_NAME, r.secret);
    await db.query("update webhook_secrets set secret = null where org_id = $1", [r.org_id]);
    moved++;
  }
  if (moved) log.info({ moved }, "webhook signing secrets moved into the secret store");
  return moved;
}

/** `sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`: the x-flotilla-signature value. */
export function signWebhook(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")}`;
}

const iso = (d: Date | null | undefined) => (d ? d.toISOString() : null);

function webhookFromRow(r: Row): Webhook {
  return {
    id: r.id,
    url: r.url,
    projectId: r.project_id,
    events: r.events,
    createdAt: r.created_at.toISOString(),
  };
}

function deliveryFromRow(r: Row): WebhookDelivery {
  return {
    id: r.id,
    subscriptionId: r.subscription_id,
    taskId: r.task_id,
    url: r.url,
    event: r.event_type,
    payload: r.payload,
    status: r.status,
    attempts: r.attempts,
    nextAttemptAt: r.status === "pending" ? iso(r.next_attempt_at) : null,
    lastStatusCode: r.last_status_code,
    lastError: r.last_error,
    attemptLog: r.attempt_log,
    createdAt: r.created_at.toISOString(),
    deliveredAt: iso(r.delivered_at),
  };
}

/** Only the origin: webhook URLs often carry a token in their path or query. */
function origin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return "(bad url)";
  }
}

/**
 * What the delivery log says of an attempt that got no HTTP answer: one message whatever the cause
 * (no DNS answer, refused, reset, timed out, not HTTP), so the log cannot tell a closed port from a silent one and
 * does not work as a port scanner. The cause goes to the server's log only.
 */
const NO_RESPONSE = "no HTTP response";
/** A destination the egress policy refuses (at this attempt: its name may resolve elsewhere now). */
const NOT_ALLOWED = "destination not allowed";

function describeError(e: unknown): string {
  const err = e as Error & { code?: string; cause?: { code?: string; message?: string } };
  return (err?.cause?.code ?? err?.code ?? err?.cause?.message ?? err?.message ?? String(e)).slice(0, 500);
}

/**
 * One POST to addresses already judged: the connection goes only to them (`pinnedLookup`), never
 * follows a redirect, and the answer's body is never read (a receiver may sit inside the network:
 * its answers must not become readable through the delivery log). Resolves with the status code.
 */
function post(
  url: string,
  addrs: LookupAddress[],
  headers: Record<string, string>,
  body: string,
  timeoutMs: number,
): Promise<number> {
  const u = new URL(url);
  const send = u.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      u,
      {
        method: "POST",
        headers: { ...headers, "content-length": String(Buffer.byteLength(body)) },
        ...(addrs.length ? { lookup: pinnedLookup(addrs) } : {}),
        signal: AbortSignal.timeout(timeoutMs),
        agent: false,
      },
      (res) => {
        resolve(res.statusCode ?? 0);
        res.destroy();
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

interface Target {
  subscriptionId: string | null;
  url: string;
  dedupeKey: string | null;
}

/** Rows in the outbox, one per target; a dedupe key already there keeps its row. */
async function insertDeliveries(
  db: Db,
  orgId: string,
  taskId: string | null,
  event: string,
  payload: unknown,
  targets: Target[],
): Promise<void> {
  if (targets.length === 0) return;
  const args: unknown[] = [orgId, taskId, event, JSON.stringify(payload)];
  const values = targets.map(
    (t) =>
      `($${args.push(deliveryId())}, $1, $${args.push(t.subscriptionId)}, $2, $${args.push(t.url)}, $3, $4::jsonb, $${args.push(t.dedupeKey)})`,
  );
  await db.query(
    `insert into webhook_deliveries (id, org_id, subscription_id, task_id, url, event_type, payload, dedupe_key)
     values ${values.join(", ")} on conflict (dedupe_key) do nothing`,
    args,
  );
}

/**
 * A `budget.warning` event's deliveries: to the subscriptions that listen for it and to its task's
 * own webhook URL. Called by whoever stored the event (the model gateway, a process of its own);
 * the dispatchers find the rows at their next look at the outbox. The task's URL is signed with the
 * organisation's secret, made when the task was submitted.
 */
export async function enqueueBudgetWarning(
  db: Db,
  e: Extract<SessionEvent, { type: "budget.warning" }>,
): Promise<void> {
  const { rows } = await db.query(
    `select x.org_id, x.project_id, s.id as subscription_id, s.url, t.webhook_url
       from sessions x
       left join webhook_subscriptions s on s.org_id = x.org_id and s.deleted_at is null
         and (s.project_id is null or s.project_id = x.project_id) and 'budget.warning' = any(s.events)
       left join tasks t on t.id = $2
      where x.id = $1`,
    [e.sessionId, e.data.taskId],
  );
  if (!rows[0]) return;
  const payload: BudgetWarningPayload = {
    sessionId: e.sessionId,
    projectId: rows[0].project_id,
    ...e.data,
    seq: e.seq,
  };
  const targets: Target[] = rows
    .filter((r) => r.subscription_id)
    .map((r) => ({
      subscriptionId: r.subscription_id,
      url: r.url,
      dedupeKey: `${r.subscription_id}:${e.id}`,
    }));
  if (rows[0].webhook_url)
    targets.push({ subscriptionId: null, url: rows[0].webhook_url, dedupeKey: `task:${e.id}` });
  await insertDeliveries(db, rows[0].org_id, e.data.taskId, "budget.warning", payload, targets);
}

/** Webhook subscriptions, the delivery outbox and this replica's dispatcher. */
export class WebhookService {
  private readonly opts: WebhookOptions;
  private readonly unsubscribe: (() => void)[] = [];
  /** Enqueues not yet written: stop() waits for them so no committed change is dropped at shutdown. */
  private readonly enqueues = new Set<Promise<void>>();
  private readonly lanes = new Set<Promise<void>>();
  private readonly busyUrls = new Set<string>();
  private inFlight = 0;
  private stopped = false;
  private kicked = false;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly db: Db,
    private readonly tasks: TaskService,
    private readonly bus: EventBus,
    private readonly log: Logger,
    private readonly secrets: SecretStore,
    opts: Partial<WebhookOptions> = {},
  ) {
    this.opts = { ...DEFAULT_WEBHOOK_OPTIONS, ...opts };
  }

  // ---- subscriptions ----

  async create(
    input: CreateWebhookBody,
    p: Principal,
    a: AuditContext = actorOf(p),
  ): Promise<CreatedWebhook> {
    const body = CreateWebhookSchema.parse(input);
    await checkRequestUrl(body.url, "url", this.opts.egress);
    if (body.projectId) {
      const { rowCount } = await this.db.query("select 1 from projects where id = $1 and org_id = $2", [
        body.projectId,
        p.orgId,
      ]);
      if (!rowCount)
        throw new FlotillaError("invalid_request", `no project ${body.projectId}`, { field: "projectId" });
    }
    const secret = body.secret ?? newSecret();
    const id = webhookId();
    // The secret first: a subscription is never without one (a crash between leaves an unused secret).
    await this.secrets.set(p.orgId, null, subscriptionSecretName(id), secret);
    const row = await withTx(this.db, async (tx) => {
      const { rows } = await tx.query(
        `insert into webhook_subscriptions (id, org_id, project_id, url, events, created_by)
         values ($1, $2, $3, $4, $5, $6) returning *`,
        [
          id,
          p.orgId,
          body.projectId ?? null,
          body.url,
          [...new Set(body.events ?? DEFAULT_WEBHOOK_EVENTS)],
          p.tokenId,
        ],
      );
      await AuditLog.record(tx, a, {
        action: "webhook.create",
        targetType: "webhook",
        targetId: id,
        detail: { url: rows[0].url, events: rows[0].events },
      });
      return rows[0];
    });
    return { ...webhookFromRow(row), secret };
  }

  async list(p: Principal): Promise<Webhook[]> {
    const { rows } = await this.db.query(
      "select * from webhook_subscriptions where org_id = $1 and deleted_at is null order by id desc",
      [p.orgId],
    );
    return rows.map(webhookFromRow);
  }

  /** Deletes the subscription; its pending deliveries are given up, its log stays readable. */
  async remove(id: string, p: Principal, a: AuditContext = actorOf(p)): Promise<Webhook> {
    const row = await withTx(this.db, async (tx) => {
      const { rows } = await tx.query(
        "update webhook_subscriptions set deleted_at = now() where id = $1 and org_id = $2 and deleted_at is null returning *",
        [id, p.orgId],
      );
      if (!rows[0]) return undefined;
      await tx.query(
        `update webhook_deliveries set status = 'failed', next_attempt_at = null, last_error = 'subscription deleted'
         where subscription_id = $1 and status = 'pending'`,
        [id],
      );
      await AuditLog.record(tx, a, {
        action: "webhook.delete",
        targetType: "webhook",
        targetId: id,
        detail: { url: rows[0].url },
      });
      return rows[0];
    });
    if (!row) throw new FlotillaError("not_found", `no webhook ${id}`, { field: "id" });
    // Its deliveries are given up (the claim sees `gone`), so nothing signs with it again.
    await this.secrets.deleteByName(p.orgId, null, subscriptionSecretName(id));
    return webhookFromRow(row);
  }

  /** The organisation's secret for tasks' own webhook URLs (admins only; checked by the route). */
  async orgSecret(p: Principal): Promise<WebhookSecret> {
    const secret = await this.ensureOrgSecret(p.orgId);
    const { rows } = await this.db.query(
      "select created_at from secrets where org_id = $1 and project_id is null and name = $2",
      [p.orgId, ORG_SECRET_NAME],
    );
    return { secret, createdAt: rows[0].created_at.toISOString() };
  }

  private ensureOrgSecret(orgId: string): Promise<string> {
    return this.secrets.ensure(orgId, null, ORG_SECRET_NAME, newSecret);
  }

  async deliveries(
    subscriptionId: string,
    q: { status?: DeliveryStatus; limit: number; cursor?: string },
    p: Principal,
  ): Promise<DeliveryPage> {
    const { rowCount } = await this.db.query(
      "select 1 from webhook_subscriptions where id = $1 and org_id = $2",
      [subscriptionId, p.orgId],
    );
    if (!rowCount) throw new FlotillaError("not_found", `no webhook ${subscriptionId}`, { field: "id" });
    return this.page("subscription_id", subscriptionId, q, p);
  }

  async taskDeliveries(
    taskId: string,
    q: { status?: DeliveryStatus; limit: number; cursor?: string },
    p: Principal,
  ): Promise<DeliveryPage> {
    const { rowCount } = await this.db.query("select 1 from tasks where id = $1 and org_id = $2", [
      taskId,
      p.orgId,
    ]);
    if (!rowCount) throw new FlotillaError("not_found", `no task ${taskId}`, { field: "id" });
    return this.page("task_id", taskId, q, p);
  }

  private async page(
    column: "subscription_id" | "task_id",
    value: string,
    q: { status?: DeliveryStatus; limit: number; cursor?: string },
    p: Principal,
  ): Promise<DeliveryPage> {
    const args: unknown[] = [value, p.orgId, q.limit + 1];
    let where = `${column} = $1 and org_id = $2`;
    if (q.status) where += ` and status = $${args.push(q.status)}`;
    if (q.cursor) where += ` and id < $${args.push(q.cursor)}`;
    const { rows } = await this.db.query(
      `select * from webhook_deliveries where ${where} order by id desc limit $3`,
      args,
    );
    const items = rows.slice(0, q.limit).map(deliveryFromRow);
    return { items, nextCursor: rows.length > q.limit ? items[items.length - 1]!.id : null };
  }

  // ---- enqueue ----

  /** Starts listening for changes and sending. Call once the database is migrated. */
  start(): void {
    this.unsubscribe.push(
      this.tasks.onTransition((t) => this.track(this.enqueueTask(t))),
      // Local events only: each replica enqueues what it stored, so no replica re-reads the others'.
      this.bus.subscribeLocal((e) => {
        if (e.type === "session.status") this.track(this.enqueueSession(e));
      }),
    );
    this.loop = this.run();
  }

  private track(p: Promise<void>): void {
    const q = p.catch((err) =>
      this.log.error({ err }, "webhook enqueue failed; the event's deliveries are lost"),
    );
    this.enqueues.add(q);
    void q.finally(() => this.enqueues.delete(q));
  }

  private async enqueueTask(t: TaskTransition): Promise<void> {
    const event = `task.${t.to}`;
    const { rows } = await this.db.query(
      `select p.org_id, s.id as subscription_id, s.url from projects p
       left join webhook_subscriptions s on s.org_id = p.org_id and s.deleted_at is null
         and (s.project_id is null or s.project_id = p.id) and s.events && $2::text[]
       where p.id = $1`,
      [t.task.projectId, [event, "task.*"]],
    );
    if (!rows[0]) return;
    const targets: Target[] = rows
      .filter((r) => r.subscription_id)
      .map((r) => ({ subscriptionId: r.subscription_id, url: r.url, dedupeKey: null }));
    if (t.task.webhook) {
      await this.ensureOrgSecret(rows[0].org_id);
      targets.push({ subscriptionId: null, url: t.task.webhook, dedupeKey: null });
    }
    const payload = { task: t.task, from: t.from, to: t.to, reason: t.reason };
    await this.insert(rows[0].org_id, t.task.id, event, payload, targets);
  }

  private async enqueueSession(e: Extract<SessionEvent, { type: "session.status" }>): Promise<void> {
    const { rows } = await this.db.query(
      `select x.org_id, x.project_id, s.id as subscription_id, s.url from sessions x
       join webhook_subscriptions s on s.org_id = x.org_id and s.deleted_at is null
         and (s.project_id is null or s.project_id = x.project_id) and 'session.status' = any(s.events)
       where x.id = $1`,
      [e.sessionId],
    );
    if (!rows[0]) return;
    const payload: SessionStatusPayload = {
      sessionId: e.sessionId,
      projectId: rows[0].project_id,
      status: e.data.status,
      ...(e.data.reason !== undefined ? { reason: e.data.reason } : {}),
      ...(e.data.error !== undefined ? { error: e.data.error } : {}),
      seq: e.seq,
    };
    const targets = rows.map((r) => ({
      subscriptionId: r.subscription_id,
      url: r.url,
      dedupeKey: `${r.subscription_id}:${e.id}`,
    }));
    await this.insert(rows[0].org_id, null, "session.status", payload, targets);
  }

  private async insert(
    orgId: string,
    taskId: string | null,
    event: string,
    payload: unknown,
    targets: Target[],
  ): Promise<void> {
    if (targets.length === 0) return;
    await insertDeliveries(this.db, orgId, taskId, event, payload, targets);
    this.kick();
  }

  // ---- dispatcher ----

  kick(): void {
    this.kicked = true;
    this.wake?.();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      this.kicked = false;
      let waitMs = this.opts.pollMs;
      try {
        const room = this.opts.concurrency - this.inFlight;
        if (room > 0) {
          const rows = await this.claim(room);
          if (rows.length > 0) {
            this.launch(rows);
            continue; // more may be due
          }
          const next = await this.db.query(
            `select extract(epoch from (min(next_attempt_at) - now())) * 1000 as ms from webhook_deliveries
             where status = 'pending' and not (url = any($1::text[]))`,
            [[...this.busyUrls]],
          );
          const ms = next.rows[0]?.ms;
          // Never below 50 ms: a due row another replica holds locked for a moment would spin us.
          if (ms !== null && ms !== undefined) waitMs = Math.min(waitMs, Math.max(50, Number(ms)));
        }
      } catch (err) {
        logLoopError(this.log, err, "webhook claim failed");
      }
      if (!this.stopped && !this.kicked) await this.sleep(waitMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }

  /**
   * Claims up to `limit` due rows, none to a URL this replica is sending to already. The lease
   * covers a lane's sends one after another; it only matters when this replica dies mid-send.
   */
  private async claim(limit: number): Promise<Row[]> {
    const leaseMs = this.opts.timeoutMs * this.opts.concurrency + 15_000;
    const { rows } = await this.db.query(
      `with due as (
         select d.id, k.id as secret_id, k.value as secret_value, k.data_key as secret_data_key,
                k.key_id as secret_key_id, s.deleted_at is not null as gone
         from webhook_deliveries d
         left join webhook_subscriptions s on s.id = d.subscription_id
         left join secrets k on k.org_id = d.org_id and k.project_id is null
           and k.name = case when d.subscription_id is null then '${ORG_SECRET_NAME}'
                             else '${SUBSCRIPTION_SECRET_PREFIX}' || d.subscription_id end
         where d.status = 'pending' and d.next_attempt_at <= now() and not (d.url = any($2::text[]))
         order by d.next_attempt_at, d.id
         limit $1
         for update of d skip locked
       )
       update webhook_deliveries d
       set attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $3::float / 1000)
       from due where d.id = due.id
       returning d.*, due.secret_id, due.secret_value, due.secret_data_key, due.secret_key_id, due.gone`,
      [limit, [...this.busyUrls], leaseMs],
    );
    return rows.sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  private launch(rows: Row[]): void {
    const byUrl = new Map<string, Row[]>();
    for (const r of rows) byUrl.set(r.url, [...(byUrl.get(r.url) ?? []), r]);
    for (const [url, lane] of byUrl) {
      this.busyUrls.add(url);
      this.inFlight += lane.length;
      const p = this.runLane(lane).finally(() => {
        this.busyUrls.delete(url);
        this.lanes.delete(p);
        this.kick();
      });
      this.lanes.add(p);
    }
  }

  private async runLane(lane: Row[]): Promise<void> {
    for (let i = 0; i < lane.length; i++) {
      if (this.stopped) {
        // Not attempted: hand the rest back at once instead of leaving them to their lease.
        const ids = lane.slice(i).map((r) => r.id);
        this.inFlight -= ids.length;
        await this.db
          .query(
            "update webhook_deliveries set attempts = attempts - 1, next_attempt_at = now() where id = any($1::text[]) and status = 'pending'",
            [ids],
          )
          .catch((err) => this.log.warn({ err }, "could not release unsent webhook deliveries"));
        return;
      }
      try {
        await this.attempt(lane[i]!);
      } catch (err) {
        this.log.error({ err, delivery: lane[i]!.id }, "webhook attempt failed unexpectedly");
      } finally {
        this.inFlight--;
      }
    }
  }

  /** One POST of one delivery, and its outcome recorded (guarded by the attempt number it claimed). */
  private async attempt(r: Row): Promise<void> {
    const n: number = r.attempts;
    const log = this.log.child({
      delivery: r.id,
      subscription: r.subscription_id,
      task: r.task_id,
      event: r.event_type,
      target: origin(r.url),
      attempt: n,
    });
    const started = Date.now();
    let statusCode: number | null = null;
    let error: string | null = null;
    let secret: string | undefined;
    try {
      if (r.secret_id)
        secret = this.secrets.open({
          id: r.secret_id,
          value: r.secret_value,
          data_key: r.secret_data_key,
          key_id: r.secret_key_id,
        });
    } catch (err) {
      log.error({ err }, "a webhook signing secret could not be opened");
    }
    if (r.gone) error = "subscription deleted";
    else if (!secret) error = "no signing secret";
    else {
      const body = JSON.stringify({
        id: r.id,
        event: r.event_type,
        createdAt: r.created_at.toISOString(),
        data: r.payload,
      });
      const timestamp = String(Math.floor(Date.now() / 1000));
      try {
        const addrs = await checkHost(new URL(r.url).hostname, this.opts.egress);
        statusCode = await post(
          r.url,
          addrs,
          {
            "content-type": "application/json",
            "user-agent": "Flotilla-Webhooks/0.1",
            [WEBHOOK_HEADERS.event]: r.event_type,
            [WEBHOOK_HEADERS.delivery]: r.id,
            [WEBHOOK_HEADERS.timestamp]: timestamp,
            [WEBHOOK_HEADERS.signature]: signWebhook(secret, timestamp, body),
          },
          body,
          this.opts.timeoutMs,
        );
        if (statusCode < 200 || statusCode >= 300) error = `HTTP ${statusCode}`;
      } catch (e) {
        if (e instanceof EgressRefused && !e.unresolved) {
          error = NOT_ALLOWED;
          log.warn(
            { why: e.message, address: e.address },
            "webhook destination refused by the egress policy",
          );
        } else {
          error = NO_RESPONSE;
          log.info({ cause: describeError(e) }, "webhook attempt got no HTTP response");
        }
      }
    }
    const ok = error === null;
    const final = ok || r.gone || n >= this.opts.maxAttempts;
    const status: DeliveryStatus = ok ? "delivered" : final ? "failed" : "pending";
    const retryInMs = backoffMs(n, this.opts.backoffBaseMs, this.opts.backoffMaxMs);
    const entry = {
      n,
      at: new Date(started).toISOString(),
      statusCode,
      error,
      durationMs: Date.now() - started,
    };
    await this.db.query(
      `update webhook_deliveries set
         status = $3,
         next_attempt_at = case when $3 = 'pending' then now() + make_interval(secs => $4::float / 1000) end,
         last_status_code = $5, last_error = $6, attempt_log = attempt_log || $7::jsonb,
         delivered_at = case when $3 = 'delivered' then now() end
       where id = $1 and attempts = $2 and status = 'pending'`,
      [r.id, n, status, retryInMs, statusCode, error, JSON.stringify([entry])],
    );
    if (ok) log.debug({ statusCode, ms: entry.durationMs }, "webhook delivered");
    else if (status === "failed") log.warn({ statusCode, error }, "webhook delivery failed for good");
    else log.info({ statusCode, error, retryInMs }, "webhook attempt failed; will retry");
  }

  /** Stops claiming, lets in-flight sends finish, and waits for enqueues already under way. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const u of this.unsubscribe.splice(0)) u();
    this.kick();
    await this.loop;
    await Promise.allSettled([...this.lanes]);
    await Promise.allSettled([...this.enqueues]);
  }
}
