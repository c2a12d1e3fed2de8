import type { Message } from "./api.ts";
import type { SessionEvent } from "./events.ts";

/**
 * The conversation, folded from a session's events: the one fold that both the web UI (streaming,
 * a batch at a time) and the server's `GET /sessions/{id}/messages` (the whole log at once, then
 * `messagesOf`) use, so the two cannot disagree. Types only from the other contracts: the browser
 * imports this file from `@flotilla/contracts/transcript`, and zod must stay out of its bundle.
 */

type Of<T extends SessionEvent["type"]> = Extract<SessionEvent, { type: T }>["data"];
export type SessionStatus = Of<"session.status">["status"];
export type ToolStatus = Of<"tool.updated">["status"];
export type Todo = Of<"todo.updated">["todos"][number];

export type Row =
  /** `eventId` is the turn.started event's: a prompt the harness gave no message id is known by it. */
  | { kind: "user"; key: string; text: string; messageId?: string; eventId: string; at: string }
  | { kind: "text"; key: string; text: string; messageId: string }
  | { kind: "reasoning"; key: string; text: string; messageId: string }
  | {
      kind: "tool";
      /** The call's id: a permission request names the call, not the part. */
      key: string;
      messageId: string;
      partId: string;
      tool: string;
      status: ToolStatus;
      title?: string;
      input?: unknown;
      output?: string;
      error?: string;
      /** The person rejected this call's permission request: whatever it proposed did not happen. */
      rejected?: boolean;
    }
  /** `error` is the message of the error the notice reports, so one error is said once. */
  | { kind: "notice"; key: string; tone: "info" | "error"; text: string; error?: string }
  /** The session's work landed: committed on its branch, merged or patched into the user's repository. */
  | { kind: "git"; key: string; action: GitAction; text: string; commit?: string; url?: string }
  /** A budget in warn mode was crossed: the gateway let the call through and says which budget. */
  | {
      kind: "budget";
      key: string;
      budget: BudgetWarning["budget"];
      limit: number;
      spent: number;
      unit: BudgetWarning["unit"];
      text: string;
    };

export type GitAction = Of<"git">["action"];
export type BudgetWarning = Of<"budget.warning">;

export type PendingPermission = Of<"permission.asked">;

export interface Usage {
  input: number;
  output: number;
  reasoning: number;
  cache: number;
  cost: number;
}

export interface Transcript {
  rows: Row[];
  permissions: PendingPermission[];
  status: SessionStatus | undefined;
  todos: Todo[];
  /** Summed over the session's messages (a message's usage may be reported more than once: last wins). */
  usage: Usage;
  lastSeq: number;
  /** What the latest status change said went wrong (a failed start, an interrupted turn), if anything. */
  statusError: { name: string; message: string } | undefined;
  /** The seq of the latest `git` event (0 before any): the branch or the user's repository changed. */
  gitSeq: number;
  /** The seq of the latest `usage` or `budget.warning` event (0 before any): what was spent changed. */
  spendSeq: number;
  /** Internal: each message's latest usage, so re-reports replace rather than add. */
  byMessage: ReadonlyMap<string, Usage>;
  /** Internal: each row's place by key, so a delta finds its row without a scan. */
  index: ReadonlyMap<string, number>;
  /** Internal: the error messages already shown since the current turn began, and the row saying each. */
  said: ReadonlyMap<string, string>;
  /** Internal: the tool call each permission request is about, so a rejection marks that call. */
  callOf: ReadonlyMap<string, string>;
  /** Internal: the calls whose permission was rejected. */
  rejectedCalls: ReadonlySet<string>;
  /** Internal: when each assistant message was first heard of, which dates it in `messagesOf`. */
  firstHeard: ReadonlyMap<string, string>;
}

const zero: Usage = { input: 0, output: 0, reasoning: 0, cache: 0, cost: 0 };

export const emptyTranscript: Transcript = {
  rows: [],
  permissions: [],
  status: undefined,
  todos: [],
  usage: zero,
  lastSeq: 0,
  statusError: undefined,
  gitSeq: 0,
  spendSeq: 0,
  byMessage: new Map(),
  index: new Map(),
  said: new Map(),
  callOf: new Map(),
  rejectedCalls: new Set(),
  firstHeard: new Map(),
};

const ABORTED = "MessageAbortedError";
/** Not a message: marks in `said` that this turn's abort has been said. */
const ABORT_SAID = "\u0000aborted";
const TURN_END: Record<"error" | "aborted" | "interrupted", string> = {
  error: "Turn failed",
  aborted: "Turn aborted",
  interrupted: "Turn interrupted",
};

/**
 * Folds a batch of events into the conversation. Idempotent by seq, so a replay after a reconnect
 * (the server resumes after Last-Event-ID, but a fresh connection may overlap) changes nothing.
 * Copies the state once per batch: React sees a new object, and a burst of deltas costs one render.
 * The key index is copied only by a batch that adds a row; deltas to existing rows (the hot path
 * while a turn streams) reuse it. The previous state is never changed, so fold stays pure.
 */
export function fold(prev: Transcript, events: SessionEvent[]): Transcript {
  if (events.every((e) => e.seq <= prev.lastSeq)) return prev;
  const rows = [...prev.rows];
  let {
    permissions,
    status,
    lastSeq,
    todos,
    byMessage,
    statusError,
    gitSeq,
    spendSeq,
    said,
    callOf,
    rejectedCalls,
    firstHeard,
  } = prev;
  let index = prev.index;
  const upsert = (row: Row, merge?: (old: Row) => Row) => {
    const i = index.get(row.key);
    if (i === undefined) {
      if (index === prev.index) index = new Map(prev.index);
      (index as Map<string, number>).set(row.key, rows.length);
      rows.push(row);
    } else rows[i] = merge ? merge(rows[i]!) : row;
  };
  // One error is said once: the harness's error event, the turn's end and the status that follows
  // it all carry it. The first says it; the turn's end rewrites that line; the status is then quiet.
  const noteSaid = (message: string, key: string) => {
    if (said === prev.said) said = new Map(prev.said);
    (said as Map<string, string>).set(message, key);
  };
  const alreadySaid = (err: { name: string; message: string }) =>
    said.has(err.message) || (err.name === ABORTED && said.has(ABORT_SAID));
  const heard = (messageId: string, at: string) => {
    if (firstHeard.has(messageId)) return;
    if (firstHeard === prev.firstHeard) firstHeard = new Map(prev.firstHeard);
    (firstHeard as Map<string, string>).set(messageId, at);
  };
  for (const e of events) {
    if (e.seq <= lastSeq) continue;
    lastSeq = e.seq;
    switch (e.type) {
      case "turn.started":
        said = new Map();
        upsert({
          kind: "user",
          key: `turn-${e.seq}`,
          text: e.data.prompt,
          messageId: e.data.messageId,
          eventId: e.id,
          at: e.at,
        });
        break;
      case "text.delta":
      case "reasoning.delta": {
        const kind = e.type === "text.delta" ? "text" : "reasoning";
        heard(e.data.messageId, e.at);
        upsert({ kind, key: e.data.partId, text: e.data.delta, messageId: e.data.messageId }, (old) =>
          old.kind === kind ? { ...old, text: old.text + e.data.delta } : old,
        );
        break;
      }
      case "text.completed":
      case "reasoning.completed":
        heard(e.data.messageId, e.at);
        upsert({
          kind: e.type === "text.completed" ? "text" : "reasoning",
          key: e.data.partId,
          text: e.data.text,
          messageId: e.data.messageId,
        });
        break;
      case "tool.updated":
        heard(e.data.messageId, e.at);
        upsert({
          kind: "tool",
          key: e.data.callId,
          messageId: e.data.messageId,
          partId: e.data.partId,
          tool: e.data.tool,
          status: e.data.status,
          title: e.data.title,
          input: e.data.input,
          output: e.data.output,
          error: e.data.error,
          ...(rejectedCalls.has(e.data.callId) ? { rejected: true } : {}),
        });
        break;
      case "todo.updated":
        todos = e.data.todos;
        break;
      case "usage": {
        spendSeq = e.seq;
        const t = e.data.tokens;
        const m = new Map(byMessage);
        m.set(e.data.messageId, {
          input: t.input,
          output: t.output,
          reasoning: t.reasoning,
          cache: t.cacheRead + t.cacheWrite,
          cost: e.data.cost,
        });
        byMessage = m;
        break;
      }
      case "permission.asked":
        permissions = [...permissions.filter((p) => p.requestId !== e.data.requestId), e.data];
        if (e.data.callId) callOf = new Map(callOf).set(e.data.requestId, e.data.callId);
        break;
      case "permission.replied": {
        permissions = permissions.filter((p) => p.requestId !== e.data.requestId);
        const callId = callOf.get(e.data.requestId);
        if (e.data.reply === "reject" && callId) {
          rejectedCalls = new Set(rejectedCalls).add(callId);
          const i = index.get(callId);
          const old = i === undefined ? undefined : rows[i];
          if (old?.kind === "tool") rows[i!] = { ...old, rejected: true };
        }
        break;
      }
      case "turn.finished":
        // The turn's final event says what it left the session in; a finished turn can no longer
        // be waiting on anything it asked.
        status = e.data.status;
        permissions = [];
        if (e.data.outcome !== "success") {
          const outcome = e.data.outcome;
          const message = e.data.error?.message;
          const aborted = outcome === "aborted";
          // An abort's own message ("Aborted", "aborted by request") says nothing more than the outcome.
          const key =
            (aborted ? said.get(ABORT_SAID) : undefined) ??
            (message ? said.get(message) : undefined) ??
            `fin-${e.seq}`;
          upsert({
            kind: "notice",
            key,
            tone: aborted ? "info" : "error",
            text: aborted || !message ? TURN_END[outcome] : `${TURN_END[outcome]}: ${message}`,
            error: message,
          });
          if (message) noteSaid(message, key);
          if (aborted) noteSaid(ABORT_SAID, key);
        }
        break;
      case "session.status":
        status = e.data.status;
        statusError = e.data.error;
        // Starting again (a retried session): what went wrong before may be said again.
        if (status === "provisioning" || status === "queued") said = new Map();
        if (e.data.error) {
          if (!alreadySaid(e.data.error)) {
            const key = `st-${e.seq}`;
            upsert({
              kind: "notice",
              key,
              tone: "error",
              text: e.data.error.message,
              error: e.data.error.message,
            });
            noteSaid(e.data.error.message, key);
          }
        } else if (e.data.reason?.startsWith("forked from"))
          upsert({
            kind: "notice",
            key: `st-${e.seq}`,
            tone: "info",
            text: `This session was ${e.data.reason}.`,
          });
        break;
      case "error": {
        if (alreadySaid(e.data)) break;
        const key = `err-${e.seq}`;
        const aborted = e.data.name === ABORTED;
        upsert({
          kind: "notice",
          key,
          tone: aborted ? "info" : "error",
          text: aborted ? TURN_END.aborted : `${e.data.name}: ${e.data.message}`,
          error: e.data.message,
        });
        noteSaid(e.data.message, key);
        if (aborted) noteSaid(ABORT_SAID, key);
        break;
      }
      case "provider.retry":
        upsert({
          kind: "notice",
          key: "retry",
          tone: "info",
          text: `Provider retry ${e.data.attempt}: ${e.data.message}`,
        });
        break;
      case "git":
        // Guarded: a malformed event is skipped rather than breaking the whole transcript.
        if (typeof e.data?.summary !== "string") break;
        gitSeq = e.seq;
        upsert({
          kind: "git",
          key: `git-${e.seq}`,
          action: e.data.action,
          text: e.data.summary,
          ...(e.data.commit ? { commit: e.data.commit } : {}),
          ...(typeof e.data.url === "string" ? { url: e.data.url } : {}),
        });
        break;
      case "budget.warning":
        // Guarded like git: a malformed event is skipped rather than breaking the whole transcript.
        if (typeof e.data?.message !== "string") break;
        spendSeq = e.seq;
        upsert({
          kind: "budget",
          key: `budget-${e.seq}`,
          budget: e.data.budget,
          limit: e.data.limit,
          spent: e.data.spent,
          unit: e.data.unit,
          text: e.data.message,
        });
        break;
      default:
        // A type this UI does not know (a newer server's) changes nothing here.
        break;
    }
  }
  const usage =
    byMessage === prev.byMessage
      ? prev.usage
      : [...byMessage.values()].reduce(
          (a, u) => ({
            input: a.input + u.input,
            output: a.output + u.output,
            reasoning: a.reasoning + u.reasoning,
            cache: a.cache + u.cache,
            cost: a.cost + u.cost,
          }),
          zero,
        );
  return {
    rows,
    permissions,
    status,
    todos,
    usage,
    lastSeq,
    statusError,
    gitSeq,
    spendSeq,
    byMessage,
    index,
    said,
    callOf,
    rejectedCalls,
    firstHeard,
  };
}

type Part = Message["parts"][number];

/** A row as the part of a message that the API returns: an optional field the event left out stays out. */
function partOf(row: Extract<Row, { kind: "text" | "reasoning" | "tool" }>): Part {
  if (row.kind !== "tool") return { type: row.kind, id: row.key, text: row.text };
  const { tool, status, title, input, output, error } = row;
  return {
    type: "tool",
    id: row.partId,
    tool,
    status,
    ...(title !== undefined ? { title } : {}),
    ...(input !== undefined ? { input } : {}),
    ...(output !== undefined ? { output } : {}),
    ...(error !== undefined ? { error } : {}),
  };
}

/**
 * The folded conversation as the API's messages: each prompt a user message; each assistant
 * message's parts, in the order they were first heard of, in a message placed where it was first
 * heard of. Notices, git lines, usage and permissions are the UI's and are left out.
 */
export function messagesOf(transcript: Transcript): Message[] {
  const out: Message[] = [];
  const byId = new Map<string, Message>();
  for (const row of transcript.rows) {
    if (row.kind === "user")
      out.push({
        id: row.messageId ?? row.eventId,
        role: "user",
        at: row.at,
        parts: [{ type: "text", id: row.eventId, text: row.text }],
      });
    else if (row.kind === "text" || row.kind === "reasoning" || row.kind === "tool") {
      let m = byId.get(row.messageId);
      if (!m) {
        m = {
          id: row.messageId,
          role: "assistant",
          at: transcript.firstHeard.get(row.messageId)!,
          parts: [],
        };
        byId.set(row.messageId, m);
        out.push(m);
      }
      m.parts.push(partOf(row));
    }
  }
  return out;
}
