import {
  type CreateTaskBody,
  CreateTaskBody as CreateTaskSchema,
  type ErrorInfo,
  FINAL_TASK_STATES,
  FlotillaError,
  newId,
  type Task,
  type TaskPage,
  type TaskResult,
  type TaskState,
} from "@flotilla/contracts";
import { defaultModel } from "../agents/opencode/config.ts";
import { type AuditContext, AuditLog, actorOf } from "../audit/audit.ts";
import type { Config } from "../config/config.ts";
import { checkRuntime } from "../identity/policy.ts";
import type { Principal } from "../identity/principal.ts";
import { type Db, type Tx, withTx } from "../platform/db/pool.ts";
import { checkRequestUrl, egressPolicy } from "../platform/http/egress.ts";
import { traceparentOf } from "../platform/tracing.ts";
import { resolveRepo } from "../workspaces/workspaces.ts";

// biome-ignore lint/suspicious/noExplicitAny: database rows
type Row = Record<string, any>;

export interface TaskTransition {
  task: Task;
  from: TaskState | null;
  to: TaskState;
  reason: string | null;
}

const iso = (d: Date | null | undefined) => (d ? d.toISOString() : null);

export function taskFromRow(r: Row): Task {
  return {
    id: r.id,
    state: r.state,
    repo: r.repo,
    baseRef: r.base_ref,
    prompt: r.prompt,
    model: r.model,
    agent: r.agent,
    priority: r.priority,
    timeoutMs: r.timeout_ms,
    maxAttempts: r.max_attempts,
    attempts: r.attempts,
    labels: r.labels,
    idempotencyKey: r.idempotency_key,
    verify: r.verify_command,
    webhook: r.webhook_url,
    commit: r.land?.commit ?? false,
    pr: r.land?.pr ?? null,
    maxCostUsd: r.max_cost_usd,
    maxTokens: r.max_tokens === null ? null : Number(r.max_tokens),
    budgetMode: r.budget_mode,
    projectId: r.project_id,
    sessionId: r.session_id,
    result: r.result,
    error: r.error,
    availableAt: r.available_at.toISOString(),
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    finishedAt: iso(r.finished_at),
  };
}

/**
 * The one way a task changes state: lock the row, re-check that it is still in an expected state,
 * update, record the change in the append-only history, all in the caller's transaction. Returns
 * null when the task had already moved on (the caller lost a race and must do nothing).
 */
export async function transition(
  tx: Tx,
  id: string,
  from: TaskState[],
  to: TaskState,
  opts: { reason?: string; set?: Record<string, unknown> } = {},
): Promise<TaskTransition | null> {
  const { rows } = await tx.query("select state from tasks where id = $1 for update", [id]);
  const current = rows[0]?.state as TaskState | undefined;
  if (!current || !from.includes(current)) return null;
  const set: Record<string, unknown> = { ...opts.set, state: to };
  if (FINAL_TASK_STATES.includes(to)) set.finished_at = new Date();
  const keys = Object.keys(set);
  const assignments = keys.map((k, i) => `${k} = $${i + 2}`).join(", ");
  const values = keys.map((k) => {
    const v = set[k];
    return v !== null && typeof v === "object" && !(v instanceof Date) ? JSON.stringify(v) : v;
  });
  const upd = await tx.query(
    `update tasks set ${assignments}, updated_at = now() where id = $1 returning *`,
    [id, ...values],
  );
  await tx.query("insert into task_history (task_id, from_state, to_state, reason) values ($1, $2, $3, $4)", [
    id,
    current,
    to,
    opts.reason ?? null,
  ]);
  return { task: taskFromRow(upd.rows[0]), from: current, to, reason: opts.reason ?? null };
}

export type TransitionListener = (t: TaskTransition) => void;

/** Tasks: durable queued work. Routes call these; the scheduler moves tasks along. */
export class TaskService {
  private readonly listeners = new Set<TransitionListener>();

  constructor(
    private readonly db: Db,
    private readonly config: Config,
  ) {}

  onTransition(fn: TransitionListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Publishes committed transitions (after commit, never inside the transaction). */
  published(ts: (TaskTransition | null)[]): void {
    for (const t of ts) if (t) for (const fn of this.listeners) fn(t);
  }

  async submit(
    input: CreateTaskBody,
    p: Principal,
    a: AuditContext = actorOf(p),
  ): Promise<{ task: Task; created: boolean }> {
    const body = CreateTaskSchema.parse(input);
    if (body.idempotencyKey) {
      const hit = await this.byKey(p.orgId, body.idempotencyKey);
      if (hit) return { task: hit, created: false };
    }
    const model = body.model ?? defaultModel(this.config);
    if (!model)
      throw new FlotillaError("invalid_request", "no model given and no default model configured", {
        field: "model",
      });
    checkRuntime(body.runtime, p);
    const egress = egressPolicy(this.config);
    if (body.webhook) await checkRequestUrl(body.webhook, "webhook", egress);
    const repo = await resolveRepo(body.repo, egress);
    const queued = Number(
      (await this.db.query("select count(*) from tasks where state = 'queued'")).rows[0].count,
    );
    if (queued >= this.config.scheduler.maxQueued) {
      throw new FlotillaError(
        "rate_limited",
        `the queue is full (${queued} ${queued === 1 ? "task" : "tasks"} waiting); try again later`,
        { retryAfterSeconds: this.config.scheduler.retryAfterSeconds },
      );
    }
    const id = newId("tsk");
    const out = await withTx(this.db, async (tx) => {
      const proj = await tx.query(
        `insert into projects (id, org_id, repo) values ($1, $2, $3)
         on conflict (org_id, repo) do update set repo = excluded.repo returning id`,
        [newId("prj"), p.orgId, repo.repo],
      );
      const ins = await tx.query(
        `insert into tasks (id, org_id, project_id, token_id, repo, base_ref, prompt, model, agent, permission, priority,
           timeout_ms, max_attempts, labels, idempotency_key, verify_command, webhook_url, runtime, land,
           max_cost_usd, max_tokens, budget_mode, traceparent, state)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, 'queued')
         on conflict (org_id, idempotency_key) where idempotency_key is not null do nothing
         returning *`,
        [
          id,
          p.orgId,
          proj.rows[0].id,
          p.tokenId,
          repo.repo,
          body.baseRef ?? "HEAD",
          body.prompt,
          model,
          body.agent ?? null,
          JSON.stringify(body.permission ?? "allow"),
          body.priority,
          body.timeoutMs,
          body.maxAttempts,
          JSON.stringify(body.labels),
          body.idempotencyKey ?? null,
          body.verify ?? null,
          body.webhook ?? null,
          body.runtime ?? null,
          body.commit || body.pr ? JSON.stringify({ commit: true, pr: body.pr ?? null }) : null,
          body.maxCostUsd ?? null,
          body.maxTokens ?? null,
          body.budgetMode ?? "hard",
          // The submitting request's span: each attempt's run is its child (tasks/scheduler.ts).
          traceparentOf() ?? null,
        ],
      );
      if (!ins.rows[0]) return null; // lost an idempotency race to a concurrent submit
      await tx.query(
        "insert into task_history (task_id, from_state, to_state, reason) values ($1, null, 'queued', 'submitted')",
        [id],
      );
      await AuditLog.record(tx, a, {
        action: "task.submit",
        targetType: "task",
        targetId: id,
        detail: { projectId: proj.rows[0].id, model },
      });
      return taskFromRow(ins.rows[0]);
    });
    if (!out) return { task: (await this.byKey(p.orgId, body.idempotencyKey!))!, created: false };
    this.published([{ task: out, from: null, to: "queued", reason: "submitted" }]);
    // Only a wake-up: schedulers also poll, so a lost notify delays the claim, never loses it.
    await this.db.query("select pg_notify('flotilla_tasks', $1)", [id]).catch(() => {});
    return { task: out, created: true };
  }

  private async byKey(orgId: string, key: string): Promise<Task | undefined> {
    const { rows } = await this.db.query("select * from tasks where org_id = $1 and idempotency_key = $2", [
      orgId,
      key,
    ]);
    return rows[0] ? taskFromRow(rows[0]) : undefined;
  }

  async get(id: string, p: Principal): Promise<Task> {
    const { rows } = await this.db.query("select * from tasks where id = $1 and org_id = $2", [id, p.orgId]);
    if (!rows[0]) throw new FlotillaError("not_found", `no task ${id}`, { field: "id" });
    const task = taskFromRow(rows[0]);
    const history = await this.db.query("select * from task_history where task_id = $1 order by seq", [id]);
    const attempts = await this.db.query("select * from task_attempts where task_id = $1 order by n", [id]);
    return {
      ...task,
      history: history.rows.map((h) => ({
        at: h.at.toISOString(),
        from: h.from_state,
        to: h.to_state,
        reason: h.reason,
      })),
      attemptList: attempts.rows.map((a) => ({
        n: a.n,
        sessionId: a.session_id,
        replica: a.replica,
        outcome: a.outcome,
        error: a.error,
        startedAt: a.started_at.toISOString(),
        finishedAt: iso(a.finished_at),
      })),
    };
  }

  async list(
    q: { state?: TaskState; label?: string; limit: number; cursor?: string },
    p: Principal,
  ): Promise<TaskPage> {
    const args: unknown[] = [p.orgId, q.limit + 1];
    let where = "org_id = $1";
    if (q.state) where += ` and state = $${args.push(q.state)}`;
    if (q.cursor) where += ` and id < $${args.push(q.cursor)}`;
    if (q.label) {
      const i = q.label.indexOf("=");
      where += ` and labels @> $${args.push(JSON.stringify({ [q.label.slice(0, i)]: q.label.slice(i + 1) }))}::jsonb`;
    }
    const { rows } = await this.db.query(
      `select * from tasks where ${where} order by id desc limit $2`,
      args,
    );
    const items = rows.slice(0, q.limit).map(taskFromRow);
    return { items, nextCursor: rows.length > q.limit ? items[items.length - 1]!.id : null };
  }

  /** Queued: cancelled at once. Running: flagged; the replica running it aborts the session. */
  async cancel(id: string, p: Principal, a: AuditContext = actorOf(p)): Promise<Task> {
    await this.get(id, p);
    const t = await withTx(this.db, async (tx) => {
      const done = await transition(tx, id, ["queued"], "cancelled", { reason: "cancelled by request" });
      const flagged = done
        ? 0
        : (
            await tx.query(
              "update tasks set cancel_requested = true, updated_at = now() where id = $1 and state = 'running'",
              [id],
            )
          ).rowCount;
      if (done || flagged)
        await AuditLog.record(tx, a, {
          action: "task.cancel",
          targetType: "task",
          targetId: id,
          detail: { effect: done ? "cancelled" : "requested" },
        });
      return done;
    });
    this.published([t]);
    // Read before waking the schedulers, so the answer is the state this request made.
    const after = await this.get(id, p);
    // Only a wake-up: the running attempt's heartbeat also reads cancel_requested.
    await this.db.query("select pg_notify('flotilla_task_cancel', $1)", [id]).catch(() => {});
    return after;
  }

  /** A finished task goes back to the queue with a fresh budget of attempts. */
  async retry(id: string, p: Principal, a: AuditContext = actorOf(p)): Promise<Task> {
    const before = await this.get(id, p);
    // A retry's attempts belong to the trace of the request that asked for them.
    const traceparent = traceparentOf();
    const t = await withTx(this.db, async (tx) => {
      const done = await transition(tx, id, ["failed", "cancelled", "timed_out", "dead"], "queued", {
        reason: "retried by request",
        set: {
          max_attempts: before.attempts + before.maxAttempts,
          available_at: new Date(),
          cancel_requested: false,
          error: null,
          ...(traceparent ? { traceparent } : {}),
        },
      });
      if (done)
        await AuditLog.record(tx, a, {
          action: "task.retry",
          targetType: "task",
          targetId: id,
          detail: { from: before.state },
        });
      return done;
    });
    if (!t)
      throw new FlotillaError(
        "conflict",
        `task ${id} is ${before.state}; only a failed, cancelled, timed-out or dead task can be retried`,
        { field: "id" },
      );
    this.published([t]);
    // Read before waking the schedulers: a claim would otherwise show as this answer's state.
    const after = await this.get(id, p);
    // Only a wake-up: schedulers also poll, so a lost notify delays the claim, never loses it.
    await this.db.query("select pg_notify('flotilla_tasks', $1)", [id]).catch(() => {});
    return after;
  }
}

export type { ErrorInfo, TaskResult };
