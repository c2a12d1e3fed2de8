import {
  type ErrorInfo,
  FlotillaError,
  failure,
  failureOfCode,
  type SessionEvent,
  type TaskResult,
  type TaskState,
} from "@flotilla/contracts";
import type { Config } from "../config/config.ts";
import type { Principal } from "../identity/principal.ts";
import { backoffMs } from "../platform/backoff.ts";
import { logLoopError } from "../platform/db/health.ts";
import { PgListener } from "../platform/db/listener.ts";
import { type Db, withTx } from "../platform/db/pool.ts";
import type { EventBus } from "../platform/events/bus.ts";
import type { Logger } from "../platform/logger.ts";
import type { Timings } from "../platform/timings.ts";
import {
  contextFromTraceparent,
  inSpan,
  type Span,
  SpanStatusCode,
  tracer,
  tracingActive,
} from "../platform/tracing.ts";
import type { ExecResult } from "../runtime/driver.ts";
import type { SessionService } from "../sessions/sessions.ts";
import type { LandingService } from "../workspaces/land.ts";
import { workspaceDiff } from "../workspaces/workspaces.ts";
import { claimBatch, type Limits } from "./claim.ts";
import { type TaskService, transition } from "./tasks.ts";

// biome-ignore lint/suspicious/noExplicitAny: database rows
type Row = Record<string, any>;

export { backoffMs } from "../platform/backoff.ts";
export { type Claim, claimBatch, claimNext, type Limits } from "./claim.ts";

/** What a task does after an attempt failed. */
export type AfterFailure =
  | { to: "cancelled"; reason: string }
  | { to: "failed" }
  | { to: "dead"; reason: string }
  | { to: "queued"; delayMs: number };

/**
 * The retry policy, pure: it reads only what the failure says of itself (`retriable`, set where
 * it was born, and any `retryAfterMs`), never its text. A cancelled task stays cancelled; a
 * failure that another attempt cannot help fails the task; otherwise it goes back to the queue
 * after the back-off (or the provider's retry-after, whichever is longer) until the attempts run out.
 */
export function afterFailure(
  error: ErrorInfo,
  attempt: number,
  opts: { maxAttempts: number; cancelled: boolean; backoffBaseMs: number; backoffMaxMs: number },
  random = Math.random,
): AfterFailure {
  if (opts.cancelled) return { to: "cancelled", reason: "cancelled by request" };
  if (!error.retriable) return { to: "failed" };
  if (attempt >= opts.maxAttempts) return { to: "dead", reason: `attempts exhausted (${attempt})` };
  const backoff = backoffMs(attempt, opts.backoffBaseMs, opts.backoffMaxMs, random);
  return { to: "queued", delayMs: Math.max(backoff, error.retryAfterMs ?? 0) };
}

/** Tasks one claim takes at most (the limits bound it further): a burst of submits is started in
 * a few transactions, not one per task. */
export const CLAIM_BATCH = 16;

const LEASE_EXPIRED = failure("LeaseExpired", "the replica running it stopped renewing its lease");

interface Running {
  taskId: string;
  n: number;
  abort: AbortController;
  reason?: "cancelled" | "lease-lost" | "shutdown";
  /** The attempt's `task.run` span. */
  span?: Span;
}

/**
 * The scheduler of one replica: a set of small systems (claim, run, heartbeat, reclaim) sharing
 * the database. Any replica may claim any task; a replica that dies stops renewing its leases and
 * another one reclaims its attempts.
 */
export class Scheduler {
  private readonly running = new Map<string, Running>();
  private stopped = false;
  private wake: (() => void) | undefined;
  private listen: PgListener | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private loop: Promise<void> | undefined;

  constructor(
    private readonly db: Db,
    private readonly tasks: TaskService,
    private readonly sessions: SessionService,
    private readonly bus: EventBus,
    private readonly config: Config,
    private readonly log: Logger,
    readonly replica: string,
    private readonly landing?: LandingService,
    private readonly timings?: Timings,
  ) {}

  limits(): Limits {
    const s = this.config.scheduler;
    // The runtime's capacity: harnesses that fit the memory budget, each serving up to
    // workspacesPerHarness sessions.
    const capacity =
      Math.max(1, Math.floor(s.memoryBudgetMb / s.harnessMemoryMb)) * this.config.pool.workspacesPerHarness;
    return {
      maxConcurrent: Math.min(s.maxConcurrent, capacity),
      perProject: s.perProject,
      perToken: s.perToken,
    };
  }

  async start(): Promise<void> {
    // Attempts held under this replica's name by a previous process (it crashed): nobody runs
    // them now, so expire their leases at once instead of waiting out the lease.
    await this.db.query(
      "update task_attempts set lease_expires_at = now() where replica = $1 and finished_at is null",
      [this.replica],
    );
    await this.reclaim();
    // Reconnects by itself after the database was away; what was notified meanwhile is found by
    // a claim pass and a cancel check then.
    const cancels = () =>
      void this.checkCancels().catch((err: unknown) => logLoopError(this.log, err, "cancel check failed"));
    this.listen = new PgListener(
      this.db,
      ["flotilla_tasks", "flotilla_task_cancel"],
      (m) => (m.channel === "flotilla_task_cancel" ? cancels() : this.kick()),
      this.log,
      () => {
        this.kick();
        cancels();
      },
    );
    await this.listen.start();
    const lease = this.config.scheduler.leaseMs;
    this.timers.push(setInterval(() => void this.renewLeases(), Math.max(250, Math.floor(lease / 3))));
    this.timers.push(setInterval(() => void this.reclaim(), Math.max(250, Math.floor(lease / 2))));
    this.timers.push(setInterval(() => this.kick(), this.config.scheduler.pollMs));
    this.loop = this.claimLoop();
  }

  kick(): void {
    this.wake?.();
  }

  private async claimLoop(): Promise<void> {
    while (!this.stopped) {
      let claimed = false;
      try {
        const claimStart = Date.now();
        const cs = await claimBatch(
          this.db,
          this.replica,
          this.limits(),
          this.config.scheduler.leaseMs,
          CLAIM_BATCH,
        );
        if (cs.length > 0) {
          claimed = true;
          this.tasks.published(cs.map((c) => c.transition));
          for (const c of cs) this.timings?.taskClaimed(c.waitedS);
          const claimEnd = Date.now();
          for (const c of cs) this.startAttempt(c.task, c.n, [claimStart, claimEnd]);
        }
      } catch (err) {
        logLoopError(this.log, err, "claim failed", "error");
      }
      if (!claimed && !this.stopped) await new Promise<void>((r) => (this.wake = r));
    }
  }

  private startAttempt(task: Row, n: number, claim?: [number, number]): void {
    const r: Running = { taskId: task.id, n, abort: new AbortController() };
    this.running.set(task.id, r);
    // The attempt joins the trace of the request that submitted (or retried) the task: its claim,
    // then its run, are children of that request's span, whichever replica claims it and when.
    const parent = contextFromTraceparent(task.traceparent);
    const attributes = {
      "flotilla.task.id": task.id,
      "flotilla.task.attempt": n,
      "flotilla.replica": this.replica,
    };
    if (claim && tracingActive())
      tracer()
        .startSpan(
          "task.claim",
          {
            startTime: claim[0],
            // How long it was due before a claim took it.
            attributes: {
              ...attributes,
              "flotilla.task.waited_ms": Math.max(0, claim[0] - new Date(task.available_at).getTime()),
            },
          },
          parent,
        )
        .end(claim[1]);
    void inSpan("task.run", attributes, (span) => this.runAttempt(task, r, span), { parent })
      .catch((err) => this.log.error({ err, task: task.id }, "attempt failed unexpectedly"))
      .finally(() => {
        this.running.delete(task.id);
        this.kick();
      });
  }

  /** Drives one attempt: a session for the task's prompt, its turn, the verify command, the outcome. */
  private async runAttempt(task: Row, r: Running, span?: Span): Promise<void> {
    const log = this.log.child({ task: task.id, attempt: r.n });
    r.span = span;
    const principal: Principal = { tokenId: task.token_id, orgId: task.org_id, role: "member" };
    const started = Date.now();
    let sessionId: string | undefined;
    try {
      const s = await this.sessions.create(
        {
          repo: task.repo,
          baseRef: task.base_ref,
          prompt: task.prompt,
          model: task.model,
          agent: task.agent ?? undefined,
          permission: task.permission,
          runtime: task.runtime ?? undefined,
        },
        principal,
        // The runtime was checked against the submitter's role when the task was submitted.
        { runtimeChecked: true },
      );
      sessionId = s.id;
      await this.db.query("update task_attempts set session_id = $3 where task_id = $1 and n = $2", [
        task.id,
        r.n,
        s.id,
      ]);
      await this.db.query("update tasks set session_id = $2 where id = $1", [task.id, s.id]);
      // Not a transition, but what a task's page shows changed: it now has a session to open.
      this.bus.publishTask({ id: task.id, state: "running" });
      const remaining = task.timeout_ms - (Date.now() - started);
      const end = await this.waitTurn(s.id, remaining, r.abort.signal);
      if (end === "timeout" || end === "abort") {
        await this.sessions
          .abort(s.id, principal)
          .catch((err: unknown) => log.warn({ err, session: s.id }, "could not abort the attempt's turn"));
        if (end === "timeout")
          return await this.finish(
            task,
            r,
            "timed_out",
            failure("Timeout", `task timed out after ${task.timeout_ms} ms`),
            null,
          );
        if (r.reason === "cancelled")
          return await this.finish(task, r, "cancelled", null, null, "cancelled by request");
        if (r.reason === "lease-lost") return; // another replica owns the task now
        return await this.finish(
          task,
          r,
          "queued",
          failure("ControlPlaneShutdown", "the replica running it shut down"),
          null,
        );
      }
      if (end.outcome === "success") {
        const result = await this.result(task, s.id, started);
        if (result.verify && result.verify.exitCode !== 0) {
          return await this.finish(
            task,
            r,
            "failed",
            failure("VerifyFailed", `verify command exited ${result.verify.exitCode}`),
            result,
          );
        }
        const land =
          task.land ?? (this.landing?.autoCommitOf(task.repo) === "task" ? { commit: true, pr: null } : null);
        if (land) {
          // The work lands only when it is done: verified, if the task has a verify command.
          const landed = await this.land(land, s.id, principal).catch((e: unknown) => e as Error);
          if (landed instanceof Error)
            return await this.finish(
              task,
              r,
              "failed",
              failure("LandFailed", `the work is done but could not be landed: ${landed.message}`),
              result,
            );
          Object.assign(result, landed);
        }
        return await this.finish(task, r, "succeeded", null, result);
      }
      const error =
        end.error ??
        failure(end.outcome === "interrupted" ? "HarnessLost" : "TurnFailed", `turn ended: ${end.outcome}`);
      // What the failed attempt left (its diff, its tokens) is worth showing, but not worth a
      // second failure: without it the task still fails with the turn's own error.
      const result = await this.result(task, s.id, started).catch((err: unknown) => {
        log.warn({ err }, "could not read the failed attempt's result");
        return null;
      });
      await this.finishFailure(task, r, error, result);
    } catch (e) {
      const error =
        e instanceof FlotillaError
          ? failureOfCode(e.code, e.message, e.retriable)
          : failure("InternalError", `the attempt could not run: ${(e as Error).message}`);
      log.warn({ err: e, error }, "attempt could not run");
      await this.finishFailure(task, r, error, null);
    } finally {
      // Without a harness pool, a finished attempt's harness is stopped to give its memory back.
      if (sessionId)
        await this.sessions
          .release(sessionId)
          .catch((err: unknown) =>
            log.warn({ err, session: sessionId }, "could not release the attempt's harness"),
          );
    }
  }

  /** Resolves when the session's turn finishes, the time runs out, or the attempt is aborted. */
  private waitTurn(
    sessionId: string,
    ms: number,
    signal: AbortSignal,
  ): Promise<"timeout" | "abort" | { outcome: string; error?: ErrorInfo }> {
    return new Promise((resolve) => {
      let unsub = () => {};
      let settled = false;
      const done = (v: "timeout" | "abort" | { outcome: string; error?: ErrorInfo }) => {
        settled = true;
        clearTimeout(timer);
        unsub();
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      };
      const onAbort = () => done("abort");
      const timer = setTimeout(() => done("timeout"), Math.max(0, ms));
      signal.addEventListener("abort", onAbort);
      const onEvent = (e: SessionEvent) => {
        if (e.type === "turn.finished") done({ outcome: e.data.outcome, error: e.data.error });
        else if (e.type === "session.status" && e.data.status === "failed")
          done({ outcome: "error", error: e.data.error });
      };
      unsub = this.bus.subscribe(sessionId, onEvent);
      // The turn may have ended before we subscribed: check the log once (again a second later
      // while the database is away, until the wait is over).
      const check = (): void =>
        void this.db
          .query(
            "select type, data from events where session_id = $1 and (type = 'turn.finished' or (type = 'session.status' and data->>'status' = 'failed')) order by seq limit 1",
            [sessionId],
          )
          .then(({ rows }) => {
            if (rows[0]) onEvent({ type: rows[0].type, data: rows[0].data } as SessionEvent);
          })
          .catch((err: unknown) => {
            logLoopError(this.log, err, "checking whether the attempt's turn ended failed");
            if (!settled) setTimeout(check, 1_000).unref();
          });
      check();
      if (signal.aborted) onAbort();
    });
  }

  /** Commits the task's work on its session's branch, and with `pr` pushes it and opens a pull request. */
  private async land(
    land: { pr: { draft: boolean; base?: string; title?: string } | null },
    sessionId: string,
    p: Principal,
  ): Promise<Pick<TaskResult, "commit" | "pullRequest">> {
    if (!this.landing) throw new Error("this control plane cannot land work");
    const pr = land.pr;
    if (pr) {
      const info = await this.landing.openPullRequest(
        sessionId,
        { draft: pr.draft, base: pr.base, title: pr.title },
        p,
      );
      return { commit: info.headSha, pullRequest: { number: info.number, url: info.url } };
    }
    const c = await this.landing.commit(sessionId, {}, p).catch((e) => {
      // A task whose agent changed nothing has nothing to land: that is not a failure.
      if (e instanceof FlotillaError && e.code === "nothing_to_commit") return null;
      throw e;
    });
    return { commit: c?.commit.sha ?? null, pullRequest: null };
  }

  private async result(task: Row, sessionId: string, started: number): Promise<TaskResult> {
    const { rows } = await this.db.query(
      `select s.tokens, s.cost, w.path, w.base_commit, sh.id as shard_id, sh.dir as shard_dir,
        sh.runtime as shard_runtime, sh.network as shard_network,
        (select data->>'text' from events where session_id = s.id and type = 'text.completed' order by seq desc limit 1) as summary
       from sessions s join workspaces w on w.id = s.workspace_id join shards sh on sh.id = w.shard_id where s.id = $1`,
      [sessionId],
    );
    const r = rows[0];
    const diff = await workspaceDiff(this.sessions.git(r), r.path, r.base_commit);
    // The verify command is the user's code: it runs in the workspace's sandbox, with the
    // sandbox's scrubbed environment, never as the control plane's user.
    const verify = task.verify_command
      ? await runVerify(
          (spec) => this.sessions.exec(r, spec),
          task.verify_command,
          Math.max(10_000, task.timeout_ms - (Date.now() - started)),
        )
      : null;
    return {
      summary: r.summary,
      files: diff.files.length,
      additions: diff.additions,
      deletions: diff.deletions,
      tokens: r.tokens,
      cost: r.cost,
      durationMs: Date.now() - started,
      verify: verify ? { command: task.verify_command, ...verify } : null,
    };
  }

  private async finishFailure(
    task: Row,
    r: Running,
    error: ErrorInfo,
    result: TaskResult | null,
  ): Promise<void> {
    const s = this.config.scheduler;
    const next = afterFailure(error, r.n, {
      maxAttempts: task.max_attempts,
      cancelled: r.reason === "cancelled",
      backoffBaseMs: s.backoffBaseMs,
      backoffMaxMs: s.backoffMaxMs,
    });
    switch (next.to) {
      case "cancelled":
        return this.finish(task, r, "cancelled", null, result, next.reason);
      case "failed":
        return this.finish(task, r, "failed", error, result);
      case "dead":
        return this.finish(task, r, "dead", error, result, next.reason);
      case "queued":
        return this.finish(task, r, "queued", error, result, undefined, next.delayMs);
    }
  }

  /** Closes the attempt and moves the task, only if this replica still holds that attempt. */
  private async finish(
    task: Row,
    r: Running,
    to: TaskState,
    error: ErrorInfo | null,
    result: TaskResult | null,
    reason?: string,
    retryInMs?: number,
  ): Promise<void> {
    const s = this.config.scheduler;
    const t = await withTx(this.db, async (tx) => {
      const held = await tx.query(
        "update task_attempts set finished_at = clock_timestamp(), outcome = $4, error = $5 where task_id = $1 and n = $2 and replica = $3 and finished_at is null returning n",
        [task.id, r.n, this.replica, to, error ? JSON.stringify(error) : null],
      );
      if (held.rowCount === 0) return null;
      const set: Record<string, unknown> = { error, result };
      if (to === "queued")
        set.available_at = new Date(
          Date.now() + (retryInMs ?? backoffMs(r.n, s.backoffBaseMs, s.backoffMaxMs)),
        );
      return transition(tx, task.id, ["running"], to, {
        reason: reason ?? (to === "queued" ? `retrying after: ${error?.message}` : (error?.message ?? to)),
        set,
      });
    });
    this.tasks.published([t]);
    if (t) {
      this.log.info({ task: task.id, attempt: r.n, to, error: error?.name }, "attempt finished");
      r.span?.setAttribute("flotilla.task.outcome", to);
      if (error) r.span?.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
    }
  }

  /** Renews this replica's leases; an attempt whose lease is gone is abandoned here. */
  /** The heartbeat: renews the leases of the attempts this process runs, and notices lost ones and cancels. */
  async renewLeases(): Promise<void> {
    if (this.running.size === 0) return;
    try {
      // Only attempts this process is running: the replica's name outlives a crash, and the
      // attempts its previous incarnation held must expire and be reclaimed, not renewed.
      const mine = [...this.running.values()];
      const { rows } = await this.db.query(
        `update task_attempts set lease_expires_at = now() + make_interval(secs => $2::float / 1000)
         where replica = $1 and finished_at is null
           and (task_id, n) in (select * from unnest($3::text[], $4::int[]))
         returning task_id, n`,
        [this.replica, this.config.scheduler.leaseMs, mine.map((r) => r.taskId), mine.map((r) => r.n)],
      );
      const held = new Set(rows.map((x) => `${x.task_id}#${x.n}`));
      // Only the attempts this renewal asked for: one claimed while it was in flight was not in its
      // list (and its fresh lease needs no renewal yet). Judged by `this.running` instead, such an
      // attempt was taken for lost and aborted before its prompt ran; its lease then lapsed into a
      // LeaseExpired retry.
      for (const r of mine) {
        if (this.running.get(r.taskId) !== r) continue;
        if (!held.has(`${r.taskId}#${r.n}`) && !r.abort.signal.aborted) {
          r.reason = "lease-lost";
          r.abort.abort();
        }
      }
      await this.checkCancels();
    } catch (err) {
      logLoopError(this.log, err, "heartbeat failed");
    }
  }

  private async checkCancels(): Promise<void> {
    if (this.running.size === 0) return;
    const ids = [...this.running.keys()];
    const { rows } = await this.db.query(
      "select id from tasks where id = any($1::text[]) and cancel_requested",
      [ids],
    );
    for (const row of rows) {
      const r = this.running.get(row.id);
      if (r && !r.abort.signal.aborted) {
        r.reason = "cancelled";
        r.abort.abort();
      }
    }
  }

  /** Attempts whose lease expired (their replica died) go back to the queue, or die. */
  async reclaim(): Promise<void> {
    try {
      const { rows } = await this.db.query(
        "select task_id, n from task_attempts where finished_at is null and lease_expires_at < now()",
      );
      for (const a of rows) {
        const t = await withTx(this.db, async (tx) => {
          const upd = await tx.query(
            "update task_attempts set finished_at = clock_timestamp(), outcome = 'lost', error = $3 where task_id = $1 and n = $2 and finished_at is null and lease_expires_at < now() returning n",
            [a.task_id, a.n, JSON.stringify(LEASE_EXPIRED)],
          );
          if (upd.rowCount === 0) return null;
          const task = (
            await tx.query("select attempts, max_attempts, cancel_requested from tasks where id = $1", [
              a.task_id,
            ])
          ).rows[0];
          const error = LEASE_EXPIRED;
          if (task.cancel_requested)
            return transition(tx, a.task_id, ["running"], "cancelled", {
              reason: "cancelled by request",
              set: { error: null },
            });
          if (task.attempts >= task.max_attempts)
            return transition(tx, a.task_id, ["running"], "dead", {
              reason: "lease expired; attempts exhausted",
              set: { error },
            });
          const s = this.config.scheduler;
          return transition(tx, a.task_id, ["running"], "queued", {
            reason: "lease expired; retrying",
            set: {
              error,
              available_at: new Date(Date.now() + backoffMs(a.n, s.backoffBaseMs, s.backoffMaxMs)),
            },
          });
        });
        this.tasks.published([t]);
        if (t)
          this.log.warn(
            { task: a.task_id, attempt: a.n, to: t.to },
            "reclaimed an attempt whose lease expired",
          );
      }
    } catch (err) {
      logLoopError(this.log, err, "reclaim failed");
    }
  }

  /** Stops claiming; running attempts are handed back to the queue for another replica. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.kick();
    await this.loop;
    for (const r of this.running.values()) {
      r.reason = "shutdown";
      r.abort.abort();
    }
    while (this.running.size) await new Promise((res) => setTimeout(res, 25));
    await this.listen?.stop();
  }
}

/** The verify command, in the workspace, through bash; its exit code decides. Output is clipped. */
export async function runVerify(
  exec: (spec: {
    command: string[];
    timeoutMs: number;
    onOutput: (c: string) => void;
  }) => Promise<ExecResult>,
  command: string,
  timeoutMs: number,
): Promise<{ exitCode: number | null; output: string }> {
  // stdout and stderr interleaved as they came, as a person at a terminal would have seen them.
  let output = "";
  const r = await exec({
    command: ["bash", "-c", command],
    timeoutMs,
    onOutput: (c) => {
      output = (output + c).slice(-16 * 1024);
    },
  });
  return { exitCode: r.timedOut ? null : r.exitCode, output };
}
