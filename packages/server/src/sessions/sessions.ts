import { dirname } from "node:path";
import {
  type CreateSessionBody,
  type Diff,
  type ErrorInfo,
  EVENT_TYPES,
  type EventBody,
  type EventType,
  FlotillaError,
  failure,
  failureOfCode,
  type Message,
  newId,
  type PermissionReplyBody,
  type PermissionRequest,
  type SendMessageBody,
  type Session,
  type SessionEvent,
  type SessionPage,
  type SessionStatus,
} from "@flotilla/contracts";
import { allowAlways, defaultModel, toRuleset } from "../agents/opencode/config.ts";
import { opencodeMessageId } from "../agents/opencode/ids.ts";
import { prewarm } from "../agents/opencode/warm.ts";
import { type AuditContext, AuditLog, actorOf } from "../audit/audit.ts";
import type { Config } from "../config/config.ts";
import type { HarnessManager, LiveHarness } from "../harnesses/manager.ts";
import { checkRuntime } from "../identity/policy.ts";
import type { Principal } from "../identity/principal.ts";
import { type Db, type Tx, withTx } from "../platform/db/pool.ts";
import type { EventLog } from "../platform/events/log.ts";
import { egressPolicy } from "../platform/http/egress.ts";
import type { Logger } from "../platform/logger.ts";
import type { Timings } from "../platform/timings.ts";
import { inSpan, SpanKind } from "../platform/tracing.ts";
import type { ExecResult, ExecSpec, NetworkPolicy, PtyProcess } from "../runtime/driver.ts";
import { placeWorkspace, type Shard } from "../workspaces/shards.ts";
import type { WarmWorkspaces } from "../workspaces/warm-workspaces.ts";
import {
  createWorkspace,
  type GitRunner,
  placeOnShard,
  removeWorkspace,
  resolveCommit,
  resolveRepo,
  workspaceDiff,
} from "../workspaces/workspaces.ts";
import { ACTIVE, type SessionIngest } from "./ingest.ts";
import { WORKING_SQL } from "./status.ts";
import { transcript } from "./transcript.ts";
import { running, type TurnState } from "./turn.ts";

export interface SessionRow {
  id: string;
  org_id: string;
  project_id: string;
  workspace_id: string;
  parent_id: string | null;
  title: string;
  status: SessionStatus;
  model: string;
  agent: string | null;
  permission: Session["permission"];
  opencode_id: string | null;
  turn: TurnState | null;
  last_seq: number;
  error: ErrorInfo | null;
  tokens: Session["usage"]["tokens"];
  cost: number;
  created_at: Date;
  updated_at: Date;
  // joined from workspaces
  repo: string;
  kind: "worktree" | "clone";
  path: string;
  shard_id: string;
  shard_dir: string;
  shard_runtime: string;
  shard_network: NetworkPolicy;
  shard_replica: string | null;
  base_ref: string;
  base_commit: string;
  branch: string | null;
  pending: number;
}

const SELECT = `select s.*, w.repo, w.kind, w.path, w.shard_id, sh.dir as shard_dir, sh.runtime as shard_runtime, sh.network as shard_network, sh.replica as shard_replica, w.base_ref, w.base_commit, w.branch,
  (select count(*)::int from permission_requests p where p.session_id = s.id and p.status = 'pending') as pending
  from sessions s join workspaces w on w.id = s.workspace_id join shards sh on sh.id = w.shard_id`;

function toSession(r: SessionRow): Session {
  return {
    id: r.id,
    title: r.title,
    status: r.status,
    repo: r.repo,
    baseRef: r.base_ref,
    baseCommit: r.base_commit,
    branch: r.branch,
    workspaceId: r.workspace_id,
    workspacePath: r.path,
    shardId: r.shard_id,
    runtime: r.shard_runtime,
    model: r.model,
    agent: r.agent,
    permission: r.permission,
    parentId: r.parent_id,
    projectId: r.project_id,
    lastSeq: r.last_seq,
    pendingPermissions: r.pending,
    error: r.error,
    usage: { tokens: r.tokens, cost: r.cost },
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
  };
}

// What a fork copies from its parent's log: the conversation. The parent's status changes, harness
// states, terminal leases, permission requests (answered there) and usage (spent there) stay its own.
const NOT_COPIED: EventType[] = [
  "session.status",
  "harness.state",
  "terminal.lease",
  "permission.asked",
  "permission.replied",
  "usage",
];
const FORK_COPIES = new Set<string>(EVENT_TYPES.filter((t) => !NOT_COPIED.includes(t)));

/**
 * The parent's events a fork starts with: those before `before` (the message the fork is cut at;
 * OpenCode ids sort in time order, so everything of a later message sorts at or after it), of the
 * kinds above, with message ids renamed to the fork's own copies.
 */
export function forkHistory(
  events: SessionEvent[],
  before: string | undefined,
  rename: Map<string, string>,
): EventBody[] {
  const out: EventBody[] = [];
  for (const e of events) {
    const msg = "messageId" in e.data ? (e.data.messageId as string | undefined) : undefined;
    if (before && msg && msg >= before) break;
    if (!FORK_COPIES.has(e.type)) continue;
    const { id: _i, sessionId: _s, seq: _q, v: _v, at: _a, ...body } = e;
    out.push(
      (msg && rename.has(msg)
        ? { ...body, data: { ...body.data, messageId: rename.get(msg) } }
        : body) as EventBody,
    );
  }
  return out;
}

/** A workspace and the shard it lives on, as the rows of sessions and workspaces hold them. */
export interface WorkspaceAt {
  path: string;
  shard_id: string;
  shard_dir: string;
  shard_runtime: string;
  shard_network: NetworkPolicy;
}

export const shardOf = (w: WorkspaceAt) => ({
  id: w.shard_id,
  dir: w.shard_dir,
  runtime: w.shard_runtime,
  network: w.shard_network,
});

const ordinal = (n: number) =>
  `${n}${n % 10 === 1 && n % 100 !== 11 ? "st" : n % 10 === 2 && n % 100 !== 12 ? "nd" : n % 10 === 3 && n % 100 !== 13 ? "rd" : "th"}`;

/**
 * A failed call to the harness, typed where it failed: unreachable (a network error: the harness is
 * gone or not listening) or refused (it answered with an error body, which the SDK throws as is).
 */
export function harnessFailure(e: unknown, what: string): FlotillaError {
  if (e instanceof FlotillaError) return e;
  const body = e as { name?: string; message?: string; data?: { message?: string } } | undefined;
  const said = body?.data?.message ?? body?.message ?? (typeof e === "string" ? e : JSON.stringify(e));
  // fetch reports a network failure (refused, reset, no route) as a TypeError, whatever its cause.
  return e instanceof TypeError
    ? new FlotillaError("harness_unavailable", `${what}: it could not be reached (${said})`)
    : new FlotillaError("harness_error", `${what}: ${said}`);
}

/** How long an abort keeps asking the harness before the turn is closed as aborted regardless. */
const ABORT_WAIT_MS = 10_000;
/** How long a permission reply waits for the harness to confirm it. */
const REPLY_WAIT_MS = 5_000;

const splitModel = (m: string) => {
  const i = m.indexOf("/");
  return { providerID: m.slice(0, i), modelID: m.slice(i + 1) };
};

/**
 * Sessions: the durable conversation with an agent in a workspace. Owns the translation of harness
 * events into the log, turn bookkeeping, and recovery when a harness or the control plane was lost.
 */
export class SessionService {
  private readonly background = new Set<Promise<unknown>>();

  constructor(
    private readonly db: Db,
    private readonly log: EventLog,
    private readonly harnesses: HarnessManager,
    private readonly config: Config,
    private readonly logger: Logger,
    readonly ingest: SessionIngest,
    /** Checkouts made ahead for hot projects; none taken when absent. */
    private readonly warm?: WarmWorkspaces,
    /** Provisioning times and failures are reported here, when given. */
    private readonly timings?: Timings,
  ) {}

  // ---- reads ---------------------------------------------------------------------------------

  /**
   * A session's workspace and harness live on the replica that made them: actions on it must be
   * sent there. Reads (the session, its events and messages) work on any replica.
   */
  private async localRow(id: string, p: Principal): Promise<SessionRow> {
    const r = await this.row(id, p);
    if (r.shard_replica && r.shard_replica !== this.config.replicaId) {
      throw new FlotillaError(
        "conflict",
        `session ${id} is served by replica ${r.shard_replica}; send this request there`,
        {
          field: "id",
          details: { replica: r.shard_replica },
        },
      );
    }
    return r;
  }

  /** The session with its workspace and shard, for an action on the workspace (it must be this replica's). */
  local(id: string, p: Principal): Promise<SessionRow> {
    return this.localRow(id, p);
  }

  private async row(id: string, p: Principal): Promise<SessionRow> {
    const { rows } = await this.db.query<SessionRow>(
      `${SELECT} where s.id = $1 and s.org_id = $2 and s.deleted_at is null`,
      [id, p.orgId],
    );
    if (!rows[0]) throw new FlotillaError("not_found", `no session ${id}`, { field: "id" });
    return rows[0];
  }

  async get(id: string, p: Principal): Promise<Session> {
    return toSession(await this.row(id, p));
  }

  async list(
    q: { status?: SessionStatus; q?: string; limit: number; cursor?: string },
    p: Principal,
  ): Promise<SessionPage> {
    const args: unknown[] = [p.orgId, q.limit + 1];
    let where = "s.org_id = $1 and s.deleted_at is null";
    if (q.status) where += ` and s.status = $${args.push(q.status)}`;
    // A substring match, not LIKE: the user's text needs no escaping. It walks the org's sessions
    // newest first until a page is full, which the list's index already orders.
    const text = q.q?.trim().toLowerCase();
    if (text) {
      const n = args.push(text);
      where += ` and (strpos(lower(s.title), $${n}) > 0 or strpos(lower(w.repo), $${n}) > 0)`;
    }
    if (q.cursor) where += ` and s.id < $${args.push(q.cursor)}`;
    const { rows } = await this.db.query<SessionRow>(
      `${SELECT} where ${where} order by s.id desc limit $2`,
      args,
    );
    const items = rows.slice(0, q.limit).map(toSession);
    return { items, nextCursor: rows.length > q.limit ? items[items.length - 1]!.id : null };
  }

  async events(id: string, p: Principal, after: number, limit: number) {
    await this.row(id, p);
    return this.log.read(this.db, id, after, limit);
  }

  /** The conversation, rebuilt from the event log: readable with no harness running. */
  async messages(id: string, p: Principal): Promise<Message[]> {
    await this.row(id, p);
    return transcript(await this.log.read(this.db, id, 0, 1_000_000));
  }

  async diff(id: string, p: Principal): Promise<Diff> {
    const r = await this.localRow(id, p);
    return workspaceDiff(this.git(r), r.path, r.base_commit);
  }

  /**
   * git in a session's workspace, through its shard's runtime driver: the agent can write the
   * workspace's .git (config, hooks), so git run there by the control plane runs inside the same
   * boundary as the agent, never as the control plane's user.
   */
  git(w: WorkspaceAt): GitRunner {
    const driver = this.harnesses.driverFor(shardOf(w));
    return async (args, env) => {
      const r = await driver.exec({
        shard: shardOf(w),
        cwd: w.path,
        command: ["git", ...args],
        env: { GIT_PAGER: "cat", LC_ALL: "C", ...env },
        timeoutMs: 120_000,
        maxOutputBytes: 64 * 1024 * 1024,
      });
      if (r.exitCode !== 0)
        throw Object.assign(
          new Error(`git ${args[0]} failed: ${r.stderr.trim().split("\n").slice(-3).join(" ")}`),
          {
            stderr: r.stderr,
          },
        );
      return { stdout: r.stdout, stderr: r.stderr };
    };
  }

  /** A command in a session's workspace (a task's verify), inside its shard's boundary. */
  exec(w: WorkspaceAt, spec: Omit<ExecSpec, "shard" | "cwd">): Promise<ExecResult> {
    return this.harnesses.driverFor(shardOf(w)).exec({ ...spec, shard: shardOf(w), cwd: w.path });
  }

  /** Where a terminal for the session runs (its workspace, on the replica that holds it), and how to start its shell there. */
  async terminalTarget(
    id: string,
    p: Principal,
  ): Promise<{ cwd: string; spawn: (cols: number, rows: number) => PtyProcess }> {
    const r = await this.localRow(id, p);
    const driver = this.harnesses.driverFor(shardOf(r));
    return {
      cwd: r.path,
      spawn: (cols, rows) =>
        driver.attach({
          shard: shardOf(r),
          cwd: r.path,
          command: [this.config.terminal.shell, "-l"],
          cols,
          rows,
          network: r.shard_network,
        }),
    };
  }

  async permissions(id: string, p: Principal): Promise<PermissionRequest[]> {
    await this.row(id, p);
    const { rows } = await this.db.query(
      "select * from permission_requests where session_id = $1 and status = 'pending' order by asked_at",
      [id],
    );
    return rows.map((r) => ({
      id: r.id,
      sessionId: r.session_id,
      permission: r.permission,
      patterns: r.patterns,
      metadata: r.metadata,
      askedAt: r.asked_at.toISOString(),
    }));
  }

  // ---- writes --------------------------------------------------------------------------------

  create(
    body: CreateSessionBody,
    p: Principal,
    opts: { runtimeChecked?: boolean } = {},
    a: AuditContext = actorOf(p),
  ): Promise<Session> {
    return inSpan("session.create", {}, (span) =>
      this.createSession(body, p, opts, a, (id) => span.setAttribute("flotilla.session.id", id)),
    );
  }

  private async createSession(
    body: CreateSessionBody,
    p: Principal,
    opts: { runtimeChecked?: boolean },
    a: AuditContext,
    named: (sessionId: string) => void,
  ): Promise<Session> {
    if (!opts.runtimeChecked) checkRuntime(body.runtime, p);
    const kind = { runtime: body.runtime ?? this.config.runtime, network: this.config.network };
    const model = body.model ?? defaultModel(this.config);
    if (!model) {
      throw new FlotillaError("invalid_request", "no model given and no default model configured", {
        field: "model",
      });
    }
    // Everything that can be refused is checked before anything is written.
    const repo = await resolveRepo(body.repo, egressPolicy(this.config));
    // Provisioning is timed from here: the checkout (or taking a warm one) is part of it.
    const since = performance.now();
    const sessionId = newId("ses");
    named(sessionId);
    const permission = body.permission ?? this.config.permission;
    const title = body.title ?? body.prompt.split("\n")[0]!.slice(0, 80);
    const row = {
      sessionId,
      orgId: p.orgId,
      title,
      model,
      agent: body.agent,
      permission,
      prompt: body.prompt,
    };
    if (repo.kind === "worktree" && this.warm?.enabled) {
      // A checkout made ahead for this project at this commit, if one is ready: no clone, no hand-over,
      // and its directory already set up by the harness.
      const baseRef = body.baseRef ?? "HEAD";
      const baseCommit = await resolveCommit(repo.repo, baseRef);
      const warm = this.warm;
      const claimed = await withTx(this.db, async (tx) => {
        const projectId = await upsertProject(tx, p.orgId, repo.repo);
        const got = await warm.claim(tx, {
          projectId,
          baseCommit,
          baseRef,
          branch: `flotilla/${sessionId}`,
          kind,
        });
        if (got) {
          await insertSession(tx, { ...row, projectId, workspaceId: got.ws.id });
          await AuditLog.record(tx, a, created(sessionId, projectId, model));
        }
        return got;
      });
      if (claimed) {
        this.logger.info({ session: sessionId, workspace: claimed.ws.id }, "session took a warm workspace");
        return this.started(sessionId, p, since);
      }
    }
    const wsId = newId("wsp");
    const ws = await inSpan(
      "workspace.create",
      // Not the repository: a URL may hold credentials, and spans leave for a collector.
      { "flotilla.workspace.id": wsId },
      () =>
        createWorkspace(
          this.config.home,
          wsId,
          sessionId,
          repo.repo,
          repo.kind,
          body.baseRef ?? "HEAD",
          egressPolicy(this.config),
        ),
    );
    let placed = ws;
    let shard: Shard | undefined;
    try {
      await withTx(this.db, async (tx) => {
        const projectId = await upsertProject(tx, p.orgId, ws.repo);
        shard = await placeWorkspace(
          tx,
          this.config.home,
          this.config.replicaId,
          p.orgId,
          projectId,
          this.config.pool.workspacesPerHarness,
          (id) => this.harnesses.forShard(id) !== undefined,
          kind,
        );
        // The workspace moves onto its shard: the one tree its harness's sandbox can see.
        placed = placeOnShard(ws, shard.dir);
        await tx.query(
          `insert into workspaces (id, org_id, project_id, kind, repo, path, state_dir, shard_id, base_ref, base_commit, branch)
           values ($1, $2, $3, $4, $5, $6, $7, $11, $8, $9, $10)`,
          [
            ws.id,
            p.orgId,
            projectId,
            ws.kind,
            ws.repo,
            placed.path,
            shard.dir,
            ws.baseRef,
            ws.baseCommit,
            ws.branch,
            shard.id,
          ],
        );
        await insertSession(tx, { ...row, projectId, workspaceId: ws.id });
        await AuditLog.record(tx, a, created(sessionId, projectId, model));
      });
      // Handed to the user the agent runs as before anything can run in it.
      await inSpan(
        "workspace.provision",
        { "flotilla.shard.id": shard!.id, "flotilla.runtime": shard!.runtime },
        () => this.harnesses.driverFor(shard!).provision(shard!, [dirname(placed.path)]),
      );
    } catch (e) {
      await removeWorkspace(placed);
      throw e;
    }
    return this.started(sessionId, p, since);
  }

  /** A session just made (its row and workspace in place): said to be provisioning, then provisioned. */
  private async started(sessionId: string, p: Principal, since: number): Promise<Session> {
    await this.log.append(sessionId, [{ type: "session.status", data: { status: "provisioning" } }]);
    this.spawn(this.provision(sessionId, since));
    return this.get(sessionId, p);
  }

  private spawn(p: Promise<unknown>): void {
    const t = p.catch((err) => this.logger.error({ err }, "background session work failed"));
    this.background.add(t);
    void t.finally(() => this.background.delete(t));
  }

  /** Waits for background provisioning (tests, shutdown). */
  async settle(): Promise<void> {
    while (this.background.size) await Promise.allSettled([...this.background]);
  }

  private async rowById(id: string): Promise<SessionRow> {
    const { rows } = await this.db.query<SessionRow>(`${SELECT} where s.id = $1`, [id]);
    if (!rows[0]) throw new FlotillaError("not_found", `no session ${id}`);
    return rows[0];
  }

  /**
   * Harness up, OpenCode session made, the pending prompt sent (with the turn's model and agent, if
   * it was given them). Failures end in `failed` with the reason. `since` (`performance.now()`):
   * when provisioning began, for its time to ready (`Timings.sessionProvisioned`).
   */
  private provision(sessionId: string, since: number): Promise<void> {
    return inSpan("session.provision", { "flotilla.session.id": sessionId }, () =>
      this.provisionSession(sessionId, since),
    );
  }

  private async provisionSession(sessionId: string, since: number): Promise<void> {
    const r = await this.rowById(sessionId);
    const runtime = r.shard_runtime;
    let ready = false;
    try {
      let queued: Promise<unknown> | undefined;
      const h = await this.ensureHarness(shardOf(r), {
        // Beyond the runtime's budget the start waits in line: the session says so, with its place
        // (appended one after another, so the log keeps the order they were told in).
        onQueued: (position, budget) => {
          queued = (queued ?? Promise.resolve()).then(() =>
            this.log.append(
              sessionId,
              [
                {
                  type: "session.status",
                  data: {
                    status: "queued",
                    reason: `waiting for a harness: ${position === 1 ? "next" : `${ordinal(position)} in line`} (${budget} may run at once)`,
                  },
                },
              ],
              { status: "queued" },
            ),
          );
        },
      });
      if (queued) {
        await queued;
        await this.log.append(sessionId, [{ type: "session.status", data: { status: "provisioning" } }], {
          status: "provisioning",
        });
      }
      await this.ingest.harnessReady(sessionId, h.id);
      // The directory's set-up is asked for alongside the agent's session, off the prompt's path.
      const model = (r.turn?.phase === "pending" && r.turn.model) || r.model;
      await Promise.all([this.ensureOpencodeSession(h, r), prewarm(h.client, r.path, model)]);
      // Ready: what follows is the prompt's (or, with none left, the session's going idle).
      this.timings?.sessionProvisioned(runtime, (performance.now() - since) / 1000);
      ready = true;
      // The pending prompt starts its turn, unless an abort during provisioning dropped it.
      const started = await this.startTurn(h, await this.rowById(sessionId));
      if (!started)
        await this.log.append(sessionId, [{ type: "session.status", data: { status: "idle" } }], {
          status: "idle",
        });
    } catch (e) {
      const error =
        e instanceof FlotillaError
          ? failureOfCode(e.code, e.message, e.retriable)
          : failure("InternalError", `the session could not be started: ${(e as Error).message}`);
      this.logger.error({ session: sessionId, err: e }, "session provisioning failed");
      // Counted apart from the provisioned (a start that failed after ready is the turn's failure).
      if (!ready) this.timings?.sessionProvisioningFailed(runtime);
      await this.log.append(
        sessionId,
        [
          { type: "error", data: error },
          { type: "session.status", data: { status: "failed", error } },
        ],
        {
          status: "failed",
          error,
        },
      );
    }
  }

  /** The shard's harness (started if need be; waiting in line beyond the budget), in a span. */
  private ensureHarness(
    shard: ReturnType<typeof shardOf>,
    opts: Parameters<HarnessManager["ensure"]>[1] = {},
  ) {
    return inSpan(
      "harness.ensure",
      { "flotilla.shard.id": shard.id, "flotilla.runtime": shard.runtime },
      (span) =>
        this.harnesses.ensure(shard, opts).then((h) => {
          span.setAttribute("flotilla.harness.id", h.id);
          return h;
        }),
    );
  }

  private async ensureOpencodeSession(h: LiveHarness, r: SessionRow): Promise<string> {
    if (r.opencode_id) return r.opencode_id;
    const res = await inSpan(
      "opencode.session.create",
      { "flotilla.session.id": r.id, "flotilla.harness.id": h.id },
      () =>
        h.client.session.create(
          { directory: r.path, title: r.title, permission: toRuleset(r.permission) },
          { throwOnError: true },
        ),
      { kind: SpanKind.CLIENT },
    ).catch((e: unknown) => {
      throw harnessFailure(e, "the harness could not create the agent's session");
    });
    const ocId = res.data.id;
    await this.db.query("update sessions set opencode_id = $2 where id = $1", [r.id, ocId]);
    await this.harnesses.noteSession(h);
    this.ingest.bind(ocId, r.id);
    return ocId;
  }

  /**
   * Starts a turn: the prompt given, or the session's pending one. The turn machine records the
   * start (with its events) before the harness is sent the prompt. False when there was nothing to
   * start (the pending prompt was dropped by an abort).
   */
  private async startTurn(
    h: LiveHarness,
    r: SessionRow,
    msg?: { text: string; model?: string; agent?: string },
  ): Promise<boolean> {
    const messageId = opencodeMessageId();
    const { step, events } = await this.ingest.turns.apply(r.id, {
      type: "start",
      messageId,
      model: msg?.model ?? r.model,
      ...(msg ? { prompt: msg.text } : {}),
      ...((msg?.agent ?? r.agent) ? { agent: (msg?.agent ?? r.agent)! } : {}),
    });
    const started = events.find((e) => e.type === "turn.started");
    if (!running(step.state) || started?.type !== "turn.started") {
      if (msg)
        throw new FlotillaError("session_busy", "a turn is already running; wait for it or abort it", {
          field: "id",
        });
      return false;
    }
    const { prompt, model, agent } = started.data;
    await this.db.query("update harnesses set last_active_at = now() where id = $1", [h.id]);
    try {
      // Under the turn's span (sessions/turns.ts), which ends when the turn does; the prompt's
      // request carries its traceparent to OpenCode.
      await inSpan(
        "opencode.prompt",
        { "flotilla.session.id": r.id, "flotilla.harness.id": h.id, "flotilla.model": model ?? r.model },
        () =>
          h.client.session.promptAsync(
            {
              sessionID: r.opencode_id!,
              messageID: messageId,
              directory: r.path,
              model: splitModel(model ?? r.model),
              agent,
              parts: [{ type: "text", text: prompt }],
            },
            { throwOnError: true },
          ),
        { kind: SpanKind.CLIENT, parent: this.ingest.turns.spanContext(r.id) },
      );
    } catch (e) {
      await this.ingest.turns.apply(r.id, {
        type: "refused",
        error: failure("HarnessError", `prompt was refused: ${(e as Error).message}`),
      });
    }
    return true;
  }

  async send(id: string, body: SendMessageBody, p: Principal): Promise<Session> {
    let r = await this.localRow(id, p);
    this.refuseBusy(r);
    if (r.status === "deleted") throw new FlotillaError("not_found", `no session ${id}`);
    // A session that failed to start has no agent yet: this message is its first prompt, sent by a
    // new start (on a new harness), which the session reports as it goes.
    if (r.status === "failed") return this.restart(r, body, p);
    // A session whose harness is gone resumes on a new harness over the same shard: OpenCode finds
    // its own sessions there, so the agent keeps its memory of earlier turns.
    const h = await this.ensureHarness(shardOf(r));
    await this.ensureOpencodeSession(h, r);
    r = await this.rowById(id);
    await this.startTurn(h, r, body);
    return this.get(id, p);
  }

  /**
   * Runs the session's last prompt again as a new turn: the first prompt when the session failed
   * before any agent took it, otherwise the latest turn's prompt (with that turn's model and agent).
   * A failed session starts again from a new harness, through the same steps as its first start.
   */
  async retry(id: string, p: Principal): Promise<Session> {
    const r = await this.localRow(id, p);
    this.refuseBusy(r);
    let turn: SendMessageBody | undefined =
      r.turn?.phase === "pending"
        ? { text: r.turn.prompt, model: r.turn.model, agent: r.turn.agent }
        : undefined;
    if (!turn) {
      const { rows } = await this.db.query(
        "select data from events where session_id = $1 and type = 'turn.started' order by seq desc limit 1",
        [id],
      );
      const d = rows[0]?.data as { prompt: string; model?: string; agent?: string } | undefined;
      if (d) turn = { text: d.prompt, model: d.model, agent: d.agent };
    }
    if (!turn)
      throw new FlotillaError("conflict", `session ${id} has no prompt to retry; send a message instead`, {
        field: "id",
      });
    if (r.status === "failed") return this.restart(r, turn, p);
    return this.send(id, turn, p);
  }

  private refuseBusy(r: SessionRow): void {
    if (r.status === "provisioning" || r.status === "queued" || ACTIVE.includes(r.status)) {
      throw new FlotillaError(
        "session_busy",
        `session is ${r.status}; wait for the turn to finish or abort it`,
        { field: "id" },
      );
    }
  }

  /**
   * A failed session starts over: the prompt becomes pending again and provisioning runs as it did
   * at creation (harness, OpenCode session, first turn). Only one caller wins the row: a second
   * retry at the same moment is told the session is busy.
   */
  private async restart(r: SessionRow, turn: SendMessageBody, p: Principal): Promise<Session> {
    const since = performance.now();
    await this.ingest.turns.transact(r.id, async (tx) => {
      const { rows } = await tx.query("select status from sessions where id = $1 for update", [r.id]);
      if (rows[0]?.status !== "failed")
        throw new FlotillaError("session_busy", `session is ${rows[0]?.status}; it is no longer failed`, {
          field: "id",
        });
      const applied = await this.ingest.turns.applyTx(
        tx,
        r.id,
        { type: "queue", prompt: turn.text, model: turn.model, agent: turn.agent },
        [{ type: "session.status", data: { status: "provisioning", reason: "starting again" } }],
        { status: "provisioning", error: null },
      );
      return { result: undefined, events: applied.events };
    });
    this.spawn(this.provision(r.id, since));
    return this.get(r.id, p);
  }

  async abort(id: string, p: Principal, a: AuditContext = actorOf(p)): Promise<Session> {
    const r = await this.localRow(id, p);
    // A session being provisioned drops its pending prompt (it then ends idle); a running turn is
    // marked as aborted by request, which is how it ends whatever the harness says last.
    if (r.status !== "provisioning" && r.status !== "queued" && !ACTIVE.includes(r.status))
      return toSession(r);
    const { step } = await this.ingest.turns.apply(id, { type: "abort" });
    // The turn machine's own transaction (TurnOwner) took the abort; the audit row follows its commit.
    await AuditLog.record(this.db, a, { action: "session.abort", targetType: "session", targetId: id });
    if (!step.effects.some((e) => e.type === "abort-harness")) return this.get(id, p);
    const h = this.harnesses.forShard(r.shard_id);
    if (h && r.opencode_id) {
      const ended = this.log.watch(id, (e) => e.type === "turn.finished", ABORT_WAIT_MS);
      let over = !running((await this.rowById(id)).turn);
      void ended.done.then(() => {
        over = true;
      });
      // An abort that reaches OpenCode before it has taken up the prompt cancels nothing, and the
      // prompt then runs: repeat it every half second until the turn has ended (the machine
      // records it as aborted) or the wait is over.
      while (!over) {
        await h.client.session
          .abort({ sessionID: r.opencode_id, directory: r.path }, { throwOnError: true })
          // Repeated until the turn ends; if the harness never answers, the turn is closed as
          // aborted after the loop, so a refused abort is logged, not fatal.
          .catch((err: unknown) =>
            this.logger.debug({ err, session: id }, "harness refused an abort; repeating"),
          );
        await Promise.race([ended.done, new Promise((res) => setTimeout(res, 500))]);
      }
      ended.cancel();
    }
    // The harness did not end the turn in time (or is gone): it ends as aborted all the same.
    await this.ingest.turns.apply(id, { type: "abort.unanswered" });
    return this.get(id, p);
  }

  /**
   * A new session over the same workspace that starts from the parent's conversation, whole or up to
   * a message. Its log opens with the parent's own events up to that point, copied in their order,
   * so it reads as the parent did; OpenCode's copies of those messages (new ids, same order) are
   * skipped when the harness is read back (history_floor). The parent's message ids in the copied
   * events are changed to the fork's own, so a fork of the fork can name them.
   */
  async fork(id: string, messageId: string | undefined, p: Principal): Promise<Session> {
    const r = await this.localRow(id, p);
    const h = await this.harnesses.ensure(shardOf(r));
    const ocId = await this.ensureOpencodeSession(h, r);
    const res = await h.client.session
      .fork({ sessionID: ocId, directory: r.path, messageID: messageId }, { throwOnError: true })
      .catch((e) => {
        throw new FlotillaError("invalid_request", `fork refused: ${(e as Error).message}`, {
          field: "messageId",
        });
      });
    const forkOc = res.data.id;
    const ids = async (sessionID: string) =>
      (
        ((await h.client.session.messages({ sessionID, directory: r.path }, { throwOnError: true })).data ??
          []) as { info: { id: string } }[]
      ).map((m) => m.info.id);
    const copies = await ids(forkOc);
    const originals = (await ids(ocId)).slice(0, copies.length);
    const rename = new Map(originals.map((o, i) => [o, copies[i]!]));
    const history = forkHistory(await this.log.read(this.db, r.id, 0, 10_000_000), messageId, rename);
    const forkId = newId("ses");
    await this.db.query(
      `insert into sessions (id, org_id, project_id, workspace_id, parent_id, title, status, model, agent, permission, opencode_id, history_floor)
       values ($1, $2, $3, $4, $5, $6, 'idle', $7, $8, $9, $10, $11)`,
      [
        forkId,
        r.org_id,
        r.project_id,
        r.workspace_id,
        r.id,
        `${r.title} (fork)`,
        r.model,
        r.agent,
        JSON.stringify(r.permission),
        forkOc,
        copies.at(-1) ?? null,
      ],
    );
    this.ingest.bind(forkOc, forkId, copies.at(-1) ?? null);
    await this.harnesses.noteSession(h);
    await this.log.append(forkId, [
      ...history,
      {
        type: "session.status",
        data: {
          status: "idle",
          reason: `forked from ${r.id}; it shares that session's workspace, so changes made in either show in both`,
        },
      },
    ]);
    return this.get(forkId, p);
  }

  async remove(
    id: string,
    opts: { workspace: boolean },
    p: Principal,
    a: AuditContext = actorOf(p),
  ): Promise<void> {
    const r = await this.localRow(id, p);
    // The session goes either way; a turn that could not be aborted ends with it (its harness is
    // released below when no other session shares the workspace).
    if (ACTIVE.includes(r.status))
      await this.abort(id, p, a).catch((err: unknown) =>
        this.logger.warn({ err, session: id }, "could not abort the turn of a session being deleted"),
      );
    await this.log.append(id, [{ type: "session.status", data: { status: "deleted" } }], {
      status: "deleted",
    });
    await withTx(this.db, async (tx) => {
      await tx.query("update sessions set deleted_at = now() where id = $1", [id]);
      await AuditLog.record(tx, a, {
        action: "session.delete",
        targetType: "session",
        targetId: id,
        detail: { workspace: opts.workspace },
      });
    });
    const others = await this.db.query(
      "select 1 from sessions where workspace_id = $1 and deleted_at is null",
      [r.workspace_id],
    );
    if (others.rowCount === 0) {
      // The shard's harness may serve other workspaces: free this directory's instance, keep the harness.
      await this.dispose(r);
      if (opts.workspace) {
        await removeWorkspace(r);
        await this.db.query("update workspaces set deleted_at = now() where id = $1", [r.workspace_id]);
      }
    }
  }

  /**
   * The session's work is done for now: when no session of its workspace is active, the harness
   * drops that directory's in-memory instance (OpenCode keeps growing with every directory it
   * serves until told so). The harness itself is the pool's to stop.
   */
  async release(id: string): Promise<void> {
    const r = await this.rowById(id);
    const { rows } = await this.db.query(
      `select 1 from sessions where workspace_id = $1 and deleted_at is null and status in ${WORKING_SQL}`,
      [r.workspace_id],
    );
    if (rows.length === 0) await this.dispose(r);
  }

  private async dispose(r: SessionRow): Promise<void> {
    const h = this.harnesses.forShard(r.shard_id);
    if (!h) return;
    await h.client.instance.dispose({ directory: r.path }, { throwOnError: true }).catch((err) => {
      this.logger.warn({ err, session: r.id }, "instance dispose failed");
    });
  }

  /**
   * "Always" becomes part of the session's policy, in our database and in OpenCode's session: the
   * harness's own memory of the answer ends with its process, and a restarted control plane starts
   * new harnesses.
   */
  private async rememberAlways(h: LiveHarness, r: SessionRow, requestId: string): Promise<void> {
    const { rows } = await this.db.query(
      "select data from events where session_id = $1 and type = 'permission.asked' and data->>'requestId' = $2 limit 1",
      [r.id, requestId],
    );
    const asked = rows[0]?.data as { permission: string; patterns: string[]; always: string[] } | undefined;
    if (!asked) return;
    const patterns = asked.always.length ? asked.always : asked.patterns;
    const policy = await withTx(this.db, async (tx) => {
      const cur = await tx.query("select permission from sessions where id = $1 for update", [r.id]);
      const next = allowAlways(cur.rows[0].permission, asked.permission, patterns);
      await tx.query("update sessions set permission = $2 where id = $1", [r.id, JSON.stringify(next)]);
      return next;
    });
    if (r.opencode_id)
      await h.client.session
        .update(
          { sessionID: r.opencode_id, directory: r.path, permission: toRuleset(policy) },
          { throwOnError: true },
        )
        .catch((err) =>
          this.logger.warn({ err, session: r.id }, "could not update the harness's session policy"),
        );
  }

  async replyPermission(
    id: string,
    requestId: string,
    body: PermissionReplyBody,
    p: Principal,
    a: AuditContext = actorOf(p),
  ): Promise<void> {
    const r = await this.localRow(id, p);
    const { rows } = await this.db.query(
      "select status from permission_requests where id = $1 and session_id = $2",
      [requestId, id],
    );
    if (!rows[0])
      throw new FlotillaError("not_found", `no permission request ${requestId} in session ${id}`, {
        field: "requestId",
      });
    if (rows[0].status !== "pending")
      throw new FlotillaError("conflict", `permission request ${requestId} was already answered`, {
        field: "requestId",
      });
    const h = this.harnesses.forShard(r.shard_id);
    if (!h)
      throw new FlotillaError(
        "harness_unavailable",
        "the session's harness is not running; send a message to resume",
      );
    await withTx(this.db, async (tx) => {
      await tx.query("update permission_requests set reply = $2, message = $3 where id = $1", [
        requestId,
        body.reply,
        body.message ?? null,
      ]);
      await AuditLog.record(tx, a, {
        action: "permission.reply",
        targetType: "session",
        targetId: id,
        detail: { requestId, reply: body.reply },
      });
    });
    if (body.reply === "always") await this.rememberAlways(h, r, requestId);

    // The harness confirms with permission.replied; the caller waits for it to read a settled state.
    const confirmed = this.log.watch(
      id,
      (e) => e.type === "permission.replied" && e.data.requestId === requestId,
      REPLY_WAIT_MS,
    );
    await h.client.permission
      .reply(
        { requestID: requestId, directory: r.path, reply: body.reply, message: body.message },
        { throwOnError: true },
      )
      .catch((e) => {
        confirmed.cancel();
        throw new FlotillaError("harness_error", `harness refused the reply: ${(e as Error).message}`);
      });
    await confirmed.done;
  }
}

const created = (sessionId: string, projectId: string, model: string) => ({
  action: "session.create",
  targetType: "session",
  targetId: sessionId,
  detail: { projectId, model },
});

async function upsertProject(tx: Tx, orgId: string, repo: string): Promise<string> {
  const proj = await tx.query(
    `insert into projects (id, org_id, repo) values ($1, $2, $3)
     on conflict (org_id, repo) do update set repo = excluded.repo returning id`,
    [newId("prj"), orgId, repo],
  );
  return proj.rows[0].id;
}

async function insertSession(
  tx: Tx,
  r: {
    sessionId: string;
    orgId: string;
    projectId: string;
    workspaceId: string;
    title: string;
    model: string;
    agent: string | undefined;
    permission: unknown;
    prompt: string;
  },
): Promise<void> {
  await tx.query(
    `insert into sessions (id, org_id, project_id, workspace_id, title, status, model, agent, permission, turn)
     values ($1, $2, $3, $4, $5, 'provisioning', $6, $7, $8, $9)`,
    [
      r.sessionId,
      r.orgId,
      r.projectId,
      r.workspaceId,
      r.title,
      r.model,
      r.agent ?? null,
      JSON.stringify(r.permission),
      JSON.stringify({ phase: "pending", prompt: r.prompt } satisfies TurnState),
    ],
  );
}
