import { type ErrorInfo, type EventBody, FAILURES, type FailureName, failure } from "@flotilla/contracts";
import { BUDGET_HEADER } from "../../gateway/gateway.ts";

// Shapes we read from OpenCode's events and messages (see @opencode-ai/sdk/v2 types). Only the
// fields we use; everything else passes by.
export interface OcPart {
  id: string;
  sessionID: string;
  messageID: string;
  type: string;
  text?: string;
  synthetic?: boolean;
  time?: { start?: number; end?: number };
  callID?: string;
  tool?: string;
  state?: { status: string; input?: unknown; output?: string; error?: string; title?: string };
}
export interface OcMessage {
  id: string;
  sessionID: string;
  role: "user" | "assistant";
  time: { created: number; completed?: number };
  error?: OcError;
  providerID?: string;
  modelID?: string;
  cost?: number;
  tokens?: { input: number; output: number; reasoning: number; cache: { read: number; write: number } };
}

/** An error as OpenCode reports it, on a message or in `session.error` (see the SDK's `ApiError` etc.). */
export interface OcError {
  name?: string;
  message?: string;
  data?: {
    message?: string;
    statusCode?: number;
    isRetryable?: boolean;
    providerID?: string;
    responseHeaders?: Record<string, string>;
  };
}

// OpenCode's own kinds of failure that Flotilla's list keeps by name.
const OPENCODE_KINDS: ReadonlySet<FailureName> = new Set<FailureName>([
  "ProviderAuthError",
  "APIError",
  "ContextOverflowError",
  "MessageOutputLengthError",
  "ContentFilterError",
  "StructuredOutputError",
  "MessageAbortedError",
]);

/** How long the provider asked us to wait, from the headers OpenCode passes on (ms or seconds). */
function retryAfterOf(headers: Record<string, string> | undefined): number | undefined {
  if (!headers) return undefined;
  const h = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  const ms = Number(h["retry-after-ms"]);
  if (Number.isFinite(ms) && ms >= 0) return Math.round(ms);
  const s = Number(h["retry-after"]);
  if (Number.isFinite(s) && s >= 0) return Math.round(s * 1000);
  return undefined;
}

/**
 * OpenCode's error as a Flotilla failure, typed here where it is born. OpenCode's own kinds keep
 * their names, and an APIError is retriable exactly when OpenCode says so (`isRetryable`);
 * anything else (UnknownError, e.g. "model not found", or a crash) is an AgentError naming what
 * OpenCode called it. Only the message goes into the event: a stack trace OpenCode attached is
 * handed to `trace` (the caller logs it).
 */
export function failureOf(e: OcError | undefined, trace?: (stack: string) => void): ErrorInfo {
  const raw = e?.data?.message ?? e?.message ?? "";
  const lines = raw.split("\n");
  const at = lines.findIndex((l) => /^\s+at\s/.test(l));
  const message = (at < 0 ? raw : lines.slice(0, at).join("\n")).trim();
  if (at >= 0) trace?.(lines.slice(at).join("\n"));
  const name = e?.name as FailureName | undefined;
  // The model gateway's refusal for a budget: named by the header it set, which OpenCode passes on.
  const headers = Object.fromEntries(
    Object.entries(e?.data?.responseHeaders ?? {}).map(([k, v]) => [k.toLowerCase(), v]),
  );
  if (name === "APIError" && headers[BUDGET_HEADER] === "budget_exceeded")
    return failure("BudgetExceeded", message || FAILURES.BudgetExceeded.about, { detail: "HTTP 402" });
  if (name && OPENCODE_KINDS.has(name)) {
    const status = e?.data?.statusCode;
    return failure(name, message || FAILURES[name].about, {
      retriable: name === "APIError" ? e?.data?.isRetryable === true : undefined,
      retryAfterMs: name === "APIError" ? retryAfterOf(e?.data?.responseHeaders) : undefined,
      detail:
        status !== undefined
          ? `HTTP ${status}`
          : e?.data?.providerID
            ? `provider ${e.data.providerID}`
            : undefined,
    });
  }
  return failure("AgentError", message || "the agent failed and said nothing more", {
    detail: e?.name ?? undefined,
  });
}

const MAX_OUTPUT = 64 * 1024;
const clip = (s: string | undefined) =>
  s === undefined
    ? undefined
    : s.length > MAX_OUTPUT
      ? `${s.slice(0, MAX_OUTPUT)}\n… [${s.length - MAX_OUTPUT} more characters]`
      : s;

/** What the log already holds for one part, from session_parts. */
export interface KnownPart {
  kind: string;
  status: string | null;
  textLen: number;
}

/**
 * Turns OpenCode's part/message events into our event bodies, remembering per part what has been
 * emitted so that nothing is said twice. After a stream drop the memory is re-seeded from the log
 * (`seed`) and the harness's state (`reconcileParts`); a part caught mid-stream is then "resynced":
 * its deltas are dropped (their offset is unknown) and its completion emits the exact remainder.
 */
export class Translator {
  private readonly kind = new Map<string, string>();
  private readonly emitted = new Map<string, number>();
  private readonly completed = new Set<string>();
  private readonly resync = new Set<string>();
  private readonly toolStatus = new Map<string, string>();
  private readonly usageDone = new Set<string>();
  private readonly userMessages = new Set<string>();

  seed(parts: Map<string, KnownPart>): void {
    for (const [id, p] of parts) {
      if (p.kind === "message") {
        if (p.status === "completed") this.usageDone.add(id);
        continue;
      }
      this.kind.set(id, p.kind);
      if (p.kind === "tool") {
        if (p.status) this.toolStatus.set(id, p.status);
        continue;
      }
      this.emitted.set(id, p.textLen);
      if (p.status === "completed") this.completed.add(id);
    }
  }

  message(info: OcMessage): EventBody[] {
    if (info.role === "user") {
      this.userMessages.add(info.id);
      return [];
    }
    if (!info.time.completed || this.usageDone.has(info.id) || !info.tokens) return [];
    this.usageDone.add(info.id);
    const t = info.tokens;
    return [
      {
        type: "usage",
        data: {
          messageId: info.id,
          model: `${info.providerID}/${info.modelID}`,
          tokens: {
            input: t.input,
            output: t.output,
            reasoning: t.reasoning,
            cacheRead: t.cache.read,
            cacheWrite: t.cache.write,
          },
          cost: info.cost ?? 0,
        },
      },
    ];
  }

  part(p: OcPart, midStream = false): EventBody[] {
    if (this.userMessages.has(p.messageID)) return [];
    if (p.type === "text" || p.type === "reasoning") {
      if (p.synthetic || !p.time) return [];
      this.kind.set(p.id, p.type);
      const text = p.text ?? "";
      const done = p.time.end !== undefined;
      if (this.completed.has(p.id)) return [];
      const sent = this.emitted.get(p.id) ?? 0;
      const out: EventBody[] = [];
      if (text.length > sent && (done || midStream)) {
        out.push({
          type: `${p.type}.delta`,
          data: { messageId: p.messageID, partId: p.id, delta: text.slice(sent) },
        } as EventBody);
        this.emitted.set(p.id, text.length);
      }
      if (done) {
        this.completed.add(p.id);
        out.push({
          type: `${p.type}.completed`,
          data: { messageId: p.messageID, partId: p.id, text },
        } as EventBody);
      } else if (midStream) this.resync.add(p.id);
      return out;
    }
    if (p.type === "tool" && p.state) {
      this.kind.set(p.id, "tool");
      if (this.toolStatus.get(p.id) === p.state.status) return [];
      this.toolStatus.set(p.id, p.state.status);
      const s = p.state;
      return [
        {
          type: "tool.updated",
          data: {
            messageId: p.messageID,
            partId: p.id,
            callId: p.callID ?? p.id,
            tool: p.tool ?? "unknown",
            status: s.status as "pending" | "running" | "completed" | "error",
            ...(s.title ? { title: s.title } : {}),
            ...(s.input !== undefined ? { input: s.input } : {}),
            ...(s.output !== undefined ? { output: clip(s.output) } : {}),
            ...(s.error !== undefined ? { error: clip(s.error) } : {}),
          },
        },
      ];
    }
    return [];
  }

  delta(messageID: string, partID: string, field: string, delta: string): EventBody[] {
    if (field !== "text" || this.userMessages.has(messageID)) return [];
    if (this.resync.has(partID) || this.completed.has(partID)) return [];
    const kind = this.kind.get(partID) === "reasoning" ? "reasoning" : "text";
    this.emitted.set(partID, (this.emitted.get(partID) ?? 0) + delta.length);
    return [{ type: `${kind}.delta`, data: { messageId: messageID, partId: partID, delta } } as EventBody];
  }
}
