import { type ErrorInfo, type EventBody, failure } from "@flotilla/contracts";
import {
  failureOf,
  type KnownPart,
  type OcMessage,
  type OcPart,
  Translator,
} from "../agents/opencode/translate.ts";
import type { LiveHarness } from "../harnesses/manager.ts";
import { isConnectionError } from "../platform/db/health.ts";
import type { Db } from "../platform/db/pool.ts";
import type { EventLog } from "../platform/events/log.ts";
import type { Logger } from "../platform/logger.ts";
import { IN_TURN, IN_TURN_SQL, PLACED_SQL, WORKING_SQL } from "./status.ts";
import { running, type TurnState } from "./turn.ts";
import type { TurnOwner } from "./turns.ts";

export const ACTIVE = IN_TURN;

// biome-ignore lint/suspicious/noExplicitAny: OpenCode event properties, checked per event type
type Props = Record<string, any>;

/**
 * From harness events to the session's log: translation, turn bookkeeping, permission requests,
 * and read-back of the harness's own state whenever our view may be incomplete (a turn ending, a
 * reconnect, an adoption). OpenCode sends some of a turn's final updates after it reports idle, so
 * a turn is closed only after reading the turn's messages back: `turn.finished` is then the last
 * event of the turn and its outcome comes from the turn's own assistant messages. What the harness
 * says about a turn goes to the turn machine (./turn.ts) through its owner; this class only reads.
 */
export class SessionIngest {
  private readonly translators = new Map<string, Translator>();
  private readonly byOc = new Map<string, string>();
  /**
   * A fork's history floor: the harness's messages with ids up to it are copies its log already
   * holds. Set by every bind (fork, first event after a restart, reconcile) before a read-back.
   */
  private readonly floors = new Map<string, string>();

  constructor(
    private readonly db: Db,
    private readonly log: EventLog,
    private readonly logger: Logger,
    readonly turns: TurnOwner,
  ) {}

  bind(opencodeId: string, sessionId: string, historyFloor?: string | null): void {
    this.byOc.set(opencodeId, sessionId);
    if (historyFloor) this.floors.set(sessionId, historyFloor);
  }

  /** Whether a harness message is one a fork inherited (its log has it from the parent's). */
  private inherited(sessionId: string, messageId: string | undefined): boolean {
    const floor = this.floors.get(sessionId);
    return floor !== undefined && messageId !== undefined && messageId <= floor;
  }

  private translator(harnessId: string): Translator {
    let t = this.translators.get(harnessId);
    if (!t) {
      t = new Translator();
      this.translators.set(harnessId, t);
    }
    return t;
  }

  /** The session a harness session's event belongs to; none for a message a fork inherited. */
  private async sessionFor(ocId: string | undefined, messageId?: string): Promise<string | undefined> {
    if (!ocId) return undefined;
    let sid = this.byOc.get(ocId);
    if (!sid) {
      const { rows } = await this.db.query(
        "select id, history_floor from sessions where opencode_id = $1 and deleted_at is null order by created_at limit 1",
        [ocId],
      );
      if (!rows[0]) return undefined;
      sid = rows[0].id as string;
      this.bind(ocId, sid, rows[0].history_floor);
    }
    return this.inherited(sid, messageId) ? undefined : sid;
  }

  /** `receivedAt`: when the harness event these come from was received (the store lag's start). */
  private async append(sessionId: string, bodies: EventBody[], receivedAt?: number): Promise<void> {
    if (bodies.length) await this.log.append(sessionId, bodies, {}, receivedAt);
  }

  /**
   * The stream's bulk (deltas, parts, messages) goes into the session's log queue without waiting
   * for its commit, so frames that arrive while one is being written go in together (group
   * commit). Whatever depends on them waits in the same queue: a turn transition
   * (`TurnOwner.transact`), a read-back (`EventLog.flushed`).
   *
   * While the database is away, an append is not failed but kept in its place in the queue and
   * written once the database is back (EventLog with a DbHealth), and a frame whose handling met
   * the lost connection (a turn's end, a permission) is handled again then (server.ts), with the
   * frames after it waiting behind it. That, not the read-back alone, is what keeps the log whole:
   * the translator counts a delta as said when it is handed to the log, so a delta dropped here
   * would leave a hole inside a part's text that later deltas and the read-back (which resumes
   * from the length the log holds) cannot mend. Published only after commit, as always: a client
   * never holds an event the log lacks.
   */
  private appendSoon(sessionId: string, bodies: EventBody[], receivedAt: number): void {
    if (bodies.length === 0) return;
    this.log
      .append(sessionId, bodies, {}, receivedAt)
      .catch((err) => this.logger.error({ err, session: sessionId }, "storing the agent's events failed"));
  }

  /** `received`: `performance.now()` when the frame was read off the harness's stream. */
  async onEvent(
    h: LiveHarness,
    directory: string,
    ev: { type: string; properties: Props },
    received = performance.now(),
  ): Promise<void> {
    const t = this.translator(h.id);
    const p = ev.properties;
    switch (ev.type) {
      case "message.part.delta": {
        const sid = await this.sessionFor(p.sessionID, p.messageID);
        if (sid) this.appendSoon(sid, t.delta(p.messageID, p.partID, p.field, p.delta), received);
        return;
      }
      case "message.part.updated": {
        const sid = await this.sessionFor(p.sessionID ?? p.part?.sessionID, p.part?.messageID);
        if (sid) this.appendSoon(sid, t.part(p.part as OcPart), received);
        return;
      }
      case "message.updated": {
        const sid = await this.sessionFor(p.info?.sessionID, p.info?.id);
        if (sid) this.appendSoon(sid, t.message(p.info as OcMessage), received);
        return;
      }
      case "session.error": {
        const sid = await this.sessionFor(p.sessionID);
        if (!sid) return;
        const error = failureOf(p.error, (stack) =>
          this.logger.warn(
            { session: sid, error: p.error?.name, stack },
            "the agent's error came with a stack trace",
          ),
        );
        await this.turns.apply(sid, { type: "error", error }, [{ type: "error", data: error }]);
        return;
      }
      case "session.status": {
        const sid = await this.sessionFor(p.sessionID);
        if (!sid) return;
        if (p.status?.type === "retry") {
          await this.append(
            sid,
            [{ type: "provider.retry", data: { attempt: p.status.attempt, message: p.status.message } }],
            received,
          );
        } else if (p.status?.type === "idle") await this.settle(h, sid);
        return;
      }
      case "session.idle": {
        const sid = await this.sessionFor(p.sessionID);
        if (sid) await this.settle(h, sid);
        return;
      }
      case "permission.asked": {
        const sid = await this.sessionFor(p.sessionID);
        if (sid) await this.permissionAsked(sid, p as PermissionAsked);
        return;
      }
      case "permission.replied": {
        const sid = await this.sessionFor(p.sessionID);
        if (sid) await this.permissionReplied(sid, p.requestID, p.reply);
        return;
      }
      case "todo.updated": {
        const sid = await this.sessionFor(p.sessionID);
        const todos = (p.todos ?? []).map((x: Props) => ({
          content: String(x.content),
          status: String(x.status),
          ...(x.priority ? { priority: String(x.priority) } : {}),
        }));
        if (sid) await this.append(sid, [{ type: "todo.updated", data: { todos } }], received);
        return;
      }
      case "file.edited": {
        // OpenCode does not say which session edited: attribute it to the active sessions of the
        // workspace the file is in (the frame's directory, or the longest workspace path prefix).
        const file = String(p.file ?? "");
        const { rows } = await this.db.query(
          `select s.id, w.path from sessions s join workspaces w on w.id = s.workspace_id
           where w.shard_id = $1 and s.status in ${IN_TURN_SQL}
             and (w.path = $2 or $3 like w.path || '/%')`,
          [h.shardId, directory, file],
        );
        for (const r of rows) {
          const rel = file.startsWith(`${r.path}/`) ? file.slice(r.path.length + 1) : file;
          await this.append(r.id, [{ type: "file.edited", data: { path: rel } }], received);
        }
        return;
      }
    }
  }

  /**
   * Reads one session's messages back from the harness and stores whatever the log lacks. Returns
   * the error of the latest turn's last assistant message (the turn's outcome), if any.
   */
  private async readBack(
    h: LiveHarness,
    sessionId: string,
    opencodeId: string,
    directory: string,
    turnMessageId?: string | null,
  ): Promise<{ error: ErrorInfo | undefined; settled: boolean; answered: boolean }> {
    const t = this.translator(h.id);
    const known = new Map<string, KnownPart>();
    // What the log holds includes every append already asked for: let the queued ones land first.
    await this.log.flushed(sessionId);
    const parts = await this.db.query(
      "select part_id, kind, status, text_len from session_parts where session_id = $1",
      [sessionId],
    );
    for (const p of parts.rows) known.set(p.part_id, { kind: p.kind, status: p.status, textLen: p.text_len });
    t.seed(known);
    const res = await h.client.session.messages({ sessionID: opencodeId, directory }, { throwOnError: true });
    const msgs = (res.data ?? []) as { info: OcMessage & { parentID?: string }; parts: OcPart[] }[];
    const bodies: EventBody[] = [];
    let lastUser: string | undefined;
    let lastError: ErrorInfo | undefined;
    let settled = true;
    // Whether the latest user message has an answer yet (an assistant message replying to it).
    let answered = false;
    for (const m of msgs) {
      if (this.inherited(sessionId, m.info.id)) continue;
      if (m.info.role === "user") {
        lastUser = m.info.id;
        lastError = undefined;
        answered = false;
        t.message(m.info);
        continue;
      }
      for (const p of m.parts) bodies.push(...t.part(p, true));
      bodies.push(...t.message(m.info));
      if (m.info.parentID === lastUser || !m.info.parentID) {
        // Read back, not born here: the stream already logged any stack trace it carried.
        lastError = m.info.error ? failureOf(m.info.error) : undefined;
        settled = m.info.time.completed !== undefined;
        answered = true;
      }
    }
    // The turn's own prompt must be the one answered: an earlier answer says nothing about it.
    if (turnMessageId && lastUser !== turnMessageId) answered = false;
    await this.append(sessionId, bodies);
    return { error: lastError, settled, answered };
  }

  /** Reads the turn back until its last assistant message is complete (briefly: OpenCode finishes it right after idle). */
  private async readBackSettled(
    h: LiveHarness,
    sessionId: string,
    opencodeId: string,
    directory: string,
    turnMessageId: string | null,
  ): Promise<{ error: ErrorInfo | undefined; answered: boolean }> {
    for (let i = 0; ; i++) {
      const r = await this.readBack(h, sessionId, opencodeId, directory, turnMessageId);
      // Not answered: nothing to wait for. Answered but not complete: OpenCode is finishing it.
      if (!r.answered || r.settled || r.error || i >= 60) return r;
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  /** The harness says the session is idle: read the turn back, then let the turn machine close it. */
  private async settle(h: LiveHarness, sessionId: string): Promise<void> {
    const { rows } = await this.db.query<{ turn: TurnState | null; opencode_id: string; path: string }>(
      "select s.turn, s.opencode_id, w.path from sessions s join workspaces w on w.id = s.workspace_id where s.id = $1",
      [sessionId],
    );
    const turn = rows[0]?.turn ?? null;
    if (!running(turn)) return;
    let back: { error: ErrorInfo | undefined; answered: boolean };
    try {
      back = await this.readBackSettled(h, sessionId, rows[0]!.opencode_id, rows[0]!.path, turn.messageId);
    } catch (err) {
      // The database away is waited out by the caller (server.ts retries the whole event then):
      // closing the turn without the read-back could leave its last words out.
      if (isConnectionError(err)) throw err;
      this.logger.warn({ err, session: sessionId }, "read-back at turn end failed; using streamed state");
      back = { error: undefined, answered: true };
    }
    await this.turns.apply(sessionId, { type: "idle", ...back });
  }

  /** The harness lost, or the control plane stopping: the session's turn, if any, ends interrupted. */
  private async interrupt(sessionId: string, error: ErrorInfo, reason: string): Promise<void> {
    await this.turns.apply(sessionId, { type: "lost", error, reason });
  }

  private async permissionAsked(sessionId: string, p: PermissionAsked): Promise<void> {
    await this.turns.transact(sessionId, async (tx) => {
      const ins = await tx.query(
        `insert into permission_requests (id, session_id, permission, patterns, metadata, status)
         values ($1, $2, $3, $4, $5, 'pending') on conflict (id) do nothing`,
        [p.id, sessionId, p.permission, JSON.stringify(p.patterns ?? []), JSON.stringify(p.metadata ?? {})],
      );
      if (ins.rowCount === 0) return { result: undefined, events: [] };
      const asked: EventBody = {
        type: "permission.asked",
        data: {
          requestId: p.id,
          permission: p.permission,
          patterns: p.patterns ?? [],
          metadata: p.metadata ?? {},
          always: p.always ?? [],
          ...(p.tool?.callID ? { callId: p.tool.callID } : {}),
        },
      };
      const applied = await this.turns.applyTx(tx, sessionId, { type: "permission.asked", requestId: p.id }, [
        asked,
      ]);
      return { result: undefined, events: applied.events };
    });
  }

  private async permissionReplied(
    sessionId: string,
    requestId: string,
    reply: "once" | "always" | "reject",
  ): Promise<void> {
    await this.turns.transact(sessionId, async (tx) => {
      const upd = await tx.query(
        "update permission_requests set status = 'replied', reply = $2, replied_at = now() where id = $1 and status = 'pending' returning message",
        [requestId, reply],
      );
      if (upd.rowCount === 0) return { result: undefined, events: [] };
      const message: string | null = upd.rows[0].message;
      const replied: EventBody = {
        type: "permission.replied",
        data: { requestId, reply, ...(message ? { message } : {}) },
      };
      const applied = await this.turns.applyTx(tx, sessionId, { type: "permission.replied", requestId }, [
        replied,
      ]);
      return { result: undefined, events: applied.events };
    });
  }

  /**
   * After a (re)connect or an adoption: read the harness's own state and store what the log is
   * missing, so the log ends in the true state even though the harness's stream has no resume.
   */
  async reconcile(h: LiveHarness): Promise<void> {
    const { rows } = await this.db.query(
      `select s.id, s.status, s.opencode_id, s.turn, s.history_floor, w.path from sessions s join workspaces w on w.id = s.workspace_id
       where w.shard_id = $1 and s.deleted_at is null and s.opencode_id is not null
         and s.status in ${WORKING_SQL}`,
      [h.shardId],
    );
    if (rows.length === 0) return;
    // Only sessions we think active can have changed unseen: idle ones change only when we drive them.
    const statuses: Record<string, { type: string }> = {};
    const pending: PermissionAsked[] = [];
    for (const directory of new Set(rows.map((r) => r.path as string))) {
      const st = await h.client.session.status({ directory }, { throwOnError: true });
      Object.assign(statuses, st.data ?? {});
      const pl = await h.client.permission.list({ directory }, { throwOnError: true });
      pending.push(...((pl.data ?? []) as PermissionAsked[]));
    }
    for (const r of rows) {
      this.bind(r.opencode_id, r.id, r.history_floor);
      const { error: lastError, answered } = await this.readBack(
        h,
        r.id,
        r.opencode_id,
        r.path,
        running(r.turn) ? r.turn.messageId : null,
      );
      const mine = pending.filter((x) => x.sessionID === r.opencode_id);
      for (const p of mine) await this.permissionAsked(r.id, p);
      await this.db.query(
        "update permission_requests set status = 'gone' where session_id = $1 and status = 'pending' and not (id = any($2::text[]))",
        [r.id, mine.map((x) => x.id)],
      );
      const st = statuses[r.opencode_id]?.type;
      // Idle with an answer to the latest prompt: the turn ended while we were not listening. Idle
      // without one: the prompt is still on its way in; the live stream will see the turn.
      if (st !== "busy" && st !== "retry")
        await this.turns.apply(r.id, { type: "idle", answered, error: lastError });
    }
  }

  async onLost(h: { id: string; shardId: string }, reason: string): Promise<void> {
    this.translators.delete(h.id);
    const { rows } = await this.db.query(
      `select s.id, s.status from sessions s join workspaces w on w.id = s.workspace_id
       where w.shard_id = $1 and s.deleted_at is null and s.status in ${WORKING_SQL}`,
      [h.shardId],
    );
    for (const r of rows) {
      await this.log.append(r.id, [
        { type: "harness.state", data: { harnessId: h.id, state: "lost", reason } },
      ]);
      const error = failure("HarnessLost", reason);
      if (ACTIVE.includes(r.status)) await this.interrupt(r.id, error, reason);
      else if (r.status === "provisioning") await this.interruptProvisioning(r.id, error, reason);
    }
  }

  private async interruptProvisioning(sessionId: string, error: ErrorInfo, reason: string): Promise<void> {
    await this.log.append(
      sessionId,
      [{ type: "session.status", data: { status: "interrupted", reason, error } }],
      { status: "interrupted", error },
    );
  }

  /** The harness a session was waiting for is ready (told to that session alone: others already use it). */
  async harnessReady(sessionId: string, harnessId: string): Promise<void> {
    await this.append(sessionId, [{ type: "harness.state", data: { harnessId, state: "ready" } }]);
  }

  /** Harness changes reach the sessions that are waiting on or using it (`ready` by harnessReady). */
  async onState(
    h: { id: string; shardId: string },
    state: "starting" | "ready" | "adopted" | "stopped",
    reason?: string,
  ): Promise<void> {
    if (state === "stopped") this.translators.delete(h.id);
    if (state === "ready") return;
    const { rows } = await this.db.query(
      `select s.id, s.status from sessions s join workspaces w on w.id = s.workspace_id
       where w.shard_id = $1 and s.deleted_at is null and s.status in ${WORKING_SQL}`,
      [h.shardId],
    );
    for (const r of rows) {
      await this.log.append(r.id, [
        { type: "harness.state", data: { harnessId: h.id, state, ...(reason ? { reason } : {}) } },
      ]);
      // A harness is stopped only when no turn runs on it (a shutdown interrupts them first), but a
      // prompt to an idle session can reach it while it is being stopped: that turn will never end
      // there, so it is lost, and says so, rather than left running.
      if (state === "stopped" && ACTIVE.includes(r.status)) {
        const why = `the harness was stopped while this turn ran (${reason ?? "stopped"})`;
        await this.interrupt(r.id, failure("HarnessLost", why), why);
      }
    }
  }

  /**
   * Boot-time recovery for sessions whose turn was in flight when the control plane died and whose
   * harness could not be adopted (adopted harnesses are settled by their reconcile).
   */
  async recoverOrphans(replica: string, hasHarness: (shardId: string) => boolean): Promise<void> {
    // Only this replica's sessions: another replica's are running on its own harnesses.
    const { rows } = await this.db.query(
      `select s.id, w.shard_id, s.status from sessions s join workspaces w on w.id = s.workspace_id
       join shards sh on sh.id = w.shard_id
       where s.status in ${PLACED_SQL} and s.deleted_at is null
         and (sh.replica = $1 or sh.replica is null)`,
      [replica],
    );
    for (const r of rows) {
      if (hasHarness(r.shard_id)) continue;
      const reason = "the control plane restarted and the session's harness was gone";
      const error = failure("ControlPlaneRestart", reason);
      if (r.status === "provisioning" || r.status === "queued")
        await this.interruptProvisioning(r.id, error, reason);
      else await this.interrupt(r.id, error, reason);
    }
  }

  /** Graceful shutdown: turns that cannot finish are recorded as interrupted, with the reason. */
  async interruptAll(replica: string, reason: string): Promise<void> {
    const { rows } = await this.db.query(
      `select s.id from sessions s join workspaces w on w.id = s.workspace_id join shards sh on sh.id = w.shard_id
       where s.status in ${IN_TURN_SQL} and s.deleted_at is null and (sh.replica = $1 or sh.replica is null)`,
      [replica],
    );
    for (const r of rows) await this.interrupt(r.id, failure("ControlPlaneShutdown", reason), reason);
  }
}

interface PermissionAsked {
  id: string;
  sessionID: string;
  permission: string;
  patterns: string[];
  metadata: Record<string, unknown>;
  always: string[];
  tool?: { callID: string };
}
