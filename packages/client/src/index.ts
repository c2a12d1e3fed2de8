// Types only from the full contracts (erased at build); run-time values from the zod-free entry,
// so a browser bundle of this client carries no zod.
import type {
  ActivityNotice,
  AuditEvent,
  AuditFilters,
  AuditPage,
  AuditVerification,
  BranchState,
  Catalog,
  CommitBody,
  CommitResult,
  CreatedWebhook,
  CreateSecretBody,
  CreateSessionBody,
  CreateTaskBody,
  CreateWebhookBody,
  DeliveryPage,
  DeliveryStatus,
  Diff,
  ErrorBody,
  GcResult,
  Harness,
  MergeBody,
  MergeResult,
  Message,
  Overview,
  PermissionReplyBody,
  PermissionRequest,
  PullRequestBody,
  PullRequestInfo,
  PushBody,
  PushResult,
  RotatedMasterKey,
  SecretInfo,
  SendMessageBody,
  Session,
  SessionEvent,
  SessionPage,
  SessionStatus,
  Task,
  TaskPage,
  TaskState,
  TerminalClientFrame,
  TerminalMode,
  TerminalServerFrame,
  TokenInfo,
  UsageQuery,
  UsageReport,
  Webhook,
  WebhookSecret,
  WebSession,
} from "@flotilla/contracts";
import { FlotillaError } from "@flotilla/contracts/light";
import { createParser } from "eventsource-parser";

/** A query's set fields, as strings. */
const defined = (q: Record<string, unknown>): Record<string, string> =>
  Object.fromEntries(Object.entries(q).flatMap(([k, v]) => (v === undefined ? [] : [[k, String(v)]])));

export type {
  ActivityNotice,
  AuditEvent,
  AuditFilters,
  AuditPage,
  AuditVerification,
  BranchState,
  Catalog,
  CommitBody,
  CommitResult,
  Diff,
  GcResult,
  Harness,
  MergeBody,
  MergeResult,
  Message,
  Overview,
  PermissionRequest,
  PullRequestBody,
  PullRequestInfo,
  PushBody,
  PushResult,
  Session,
  SessionEvent,
  TerminalClientFrame,
  TerminalMode,
  TerminalServerFrame,
  TokenInfo,
  WebSession,
};
export { FlotillaError };

export interface ClientOptions {
  baseUrl: string;
  token?: string;
  fetch?: typeof fetch;
  /** Passed to fetch: a browser page that authenticates by cookie sets "include" (or "same-origin"). */
  credentials?: "include" | "same-origin" | "omit";
  /** Extra headers computed per request, e.g. the CSRF header a cookie-authenticated page must send. */
  headers?: () => Record<string, string>;
}

export interface StreamOptions {
  /** Resume after this seq (0 = from the start). */
  after?: number;
  signal?: AbortSignal;
  /** Reconnect with Last-Event-ID when the connection drops (default true). */
  reconnect?: boolean;
  onReconnecting?: (attempt: number, error: unknown) => void;
  /** The stream is open again after `onReconnecting`, resuming after `after` (the last seq seen). */
  onReconnected?: (after: number) => void;
}

/**
 * Typed client for the Flotilla API. Request and response types are the zod contracts the server
 * validates against and publishes as /openapi.json. Errors come back as FlotillaError with the
 * server's code, field and status.
 */
export class FlotillaClient {
  private readonly baseUrl: string;
  private readonly fetch: typeof fetch;
  constructor(private readonly opts: ClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/$/, "");
    // Called through a wrapper: a browser's fetch throws "Illegal invocation" when called as a method
    // of another object (this.fetch(...)).
    this.fetch = opts.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return {
      ...(this.opts.token ? { authorization: `Bearer ${this.opts.token}` } : {}),
      ...this.opts.headers?.(),
      ...extra,
    };
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return (await this.raw(method, path, body)).data as T;
  }

  /** A request whose status matters to the caller (201 vs 200); errors throw as in `request`. */
  async raw(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; data: unknown; headers: Headers }> {
    let res: Response;
    try {
      res = await this.fetch(`${this.baseUrl}${path}`, {
        method,
        headers: this.headers(body !== undefined ? { "content-type": "application/json" } : {}),
        body: body !== undefined ? JSON.stringify(body) : undefined,
        ...(this.opts.credentials ? { credentials: this.opts.credentials } : {}),
      });
    } catch (e) {
      throw new FlotillaError(
        "unreachable",
        `cannot reach Flotilla at ${this.baseUrl}: ${(e as Error).message}`,
        {
          cause: e,
        },
      );
    }
    const text = await res.text();
    let data: unknown;
    try {
      data = text ? JSON.parse(text) : undefined;
    } catch {
      data = undefined;
    }
    if (!res.ok) {
      const b = data as ErrorBody | undefined;
      if (b?.error?.code) {
        throw FlotillaError.fromBody(res.status, b, res.headers.get("retry-after"));
      }
      throw new FlotillaError("internal", `HTTP ${res.status}: ${text.slice(0, 200)}`);
    }
    return { status: res.status, data, headers: res.headers };
  }

  health = () => this.request<{ ok: boolean }>("GET", "/healthz");
  models = () => this.request<Catalog>("GET", "/models");
  harnesses = () => this.request<{ items: Harness[] }>("GET", "/harnesses").then((r) => r.items);
  /** The caller's organisation at a glance: sessions, tasks, harnesses, today's usage, recent failures. */
  overview = () => this.request<Overview>("GET", "/overview");
  secrets = {
    /** Stored encrypted; the value is never returned. */
    set: (body: CreateSecretBody) => this.request<SecretInfo>("POST", "/secrets", body),
    list: () => this.request<{ items: SecretInfo[] }>("GET", "/secrets").then((r) => r.items),
    delete: (id: string) => this.request<SecretInfo>("DELETE", `/secrets/${enc(id)}`),
    rotateMaster: () => this.request<RotatedMasterKey>("POST", "/secrets/rotate-master"),
  };
  /** What model calls through the gateway used and cost, grouped (`by: "project,model"`), optionally
   * only one project's, session's or task's (`project`, `session`, `task`). */
  usage = (q: Omit<UsageQuery, "format"> = {}) =>
    this.request<UsageReport>("GET", `/usage?${new URLSearchParams(defined(q))}`);
  /** The same as CSV: a header row, then one row per group. */
  usageCsv = async (q: Omit<UsageQuery, "format"> = {}): Promise<string> => {
    const res = await this.fetch(
      `${this.baseUrl}/usage?${new URLSearchParams({ ...defined(q), format: "csv" })}`,
      {
        headers: this.headers({ accept: "text/csv" }),
        ...(this.opts.credentials ? { credentials: this.opts.credentials } : {}),
      },
    ).catch((e: Error) => {
      throw new FlotillaError("unreachable", `cannot reach Flotilla at ${this.baseUrl}: ${e.message}`, {
        cause: e,
      });
    });
    const text = await res.text();
    if (!res.ok) {
      const b = (() => {
        try {
          return JSON.parse(text) as ErrorBody;
        } catch {
          return undefined;
        }
      })();
      if (b?.error?.code) throw FlotillaError.fromBody(res.status, b, res.headers.get("retry-after"));
      throw new FlotillaError("internal", `HTTP ${res.status}: ${text.slice(0, 200)}`);
    }
    return text;
  };

  /** The org's audit log (admin): pages newest first, the whole of it as JSON lines, its chain checked. */
  audit = {
    list: (q: AuditFilters & { limit?: number; cursor?: string } = {}) =>
      this.request<AuditPage>("GET", `/audit${query(q)}`),
    /** Each line of `GET /audit/export` (one AuditEvent as JSON), oldest first, as it streams. */
    export: (q: AuditFilters = {}): AsyncGenerator<string> => this.lines(`/audit/export${query(q)}`),
    verify: () => this.request<AuditVerification>("GET", "/audit/verify"),
  };

  private async *lines(path: string): AsyncGenerator<string> {
    const res = await this.fetch(`${this.baseUrl}${path}`, {
      headers: this.headers(),
      ...(this.opts.credentials ? { credentials: this.opts.credentials } : {}),
    }).catch((e: Error) => {
      throw new FlotillaError("unreachable", `cannot reach Flotilla at ${this.baseUrl}: ${e.message}`, {
        cause: e,
      });
    });
    if (!res.ok || !res.body) {
      const text = await res.text();
      let b: ErrorBody | undefined;
      try {
        b = JSON.parse(text) as ErrorBody;
      } catch {
        b = undefined;
      }
      if (b?.error?.code) throw FlotillaError.fromBody(res.status, b, res.headers.get("retry-after"));
      throw new FlotillaError("internal", `HTTP ${res.status}: ${text.slice(0, 200)}`);
    }
    const decoder = new TextDecoder();
    let rest = "";
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      rest += decoder.decode(chunk, { stream: true });
      let i = rest.indexOf("\n");
      while (i >= 0) {
        const line = rest.slice(0, i);
        rest = rest.slice(i + 1);
        if (line) yield line;
        i = rest.indexOf("\n");
      }
    }
    rest += decoder.decode();
    if (rest) yield rest;
  }

  /** Checkouts and branches no live session owns: listed, or removed with `{ remove: true }` (admin). */
  gc = (opts: { remove?: boolean } = {}) =>
    opts.remove ? this.request<GcResult>("POST", "/gc") : this.request<GcResult>("GET", "/gc");

  /**
   * The WebSocket URL of a session's terminal (frames: TerminalClientFrame / TerminalServerFrame).
   * The client opens it with its own WebSocket: Node clients send the token as a header, so it is
   * put in the query only when asked (`tokenInQuery`, for browsers, which cannot set headers).
   */
  terminalUrl = (id: string, o: { mode?: TerminalMode; client?: string; tokenInQuery?: boolean } = {}) => {
    const u = new URL(`${this.baseUrl}/sessions/${encodeURIComponent(id)}/terminal`);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    if (o.mode) u.searchParams.set("mode", o.mode);
    if (o.client) u.searchParams.set("client", o.client);
    if (o.tokenInQuery && this.opts.token) u.searchParams.set("token", this.opts.token);
    return u.toString();
  };

  sessions = {
    create: (body: CreateSessionBody) => this.request<Session>("POST", "/sessions", body),
    /** `q`: only sessions whose title or repository contains it (any case). */
    list: (q: { status?: SessionStatus; q?: string; limit?: number; cursor?: string } = {}) => {
      const p = new URLSearchParams();
      for (const [k, v] of Object.entries(q)) if (v !== undefined) p.set(k, String(v));
      const qs = p.toString();
      return this.request<SessionPage>("GET", `/sessions${qs ? `?${qs}` : ""}`);
    },
    get: (id: string) => this.request<Session>("GET", `/sessions/${enc(id)}`),
    send: (id: string, body: SendMessageBody) =>
      this.request<Session>("POST", `/sessions/${enc(id)}/messages`, body),
    abort: (id: string) => this.request<Session>("POST", `/sessions/${enc(id)}/abort`),
    /** Runs the last prompt again (a failed session starts again on a new harness). */
    retry: (id: string) => this.request<Session>("POST", `/sessions/${enc(id)}/retry`),
    fork: (id: string, messageId?: string) =>
      this.request<Session>("POST", `/sessions/${enc(id)}/fork`, messageId ? { messageId } : {}),
    delete: (id: string, opts: { workspace?: boolean } = {}) =>
      this.request<{ deleted: true }>(
        "DELETE",
        `/sessions/${enc(id)}${opts.workspace ? "?workspace=true" : ""}`,
      ),
    messages: (id: string) =>
      this.request<{ items: Message[] }>("GET", `/sessions/${enc(id)}/messages`).then((r) => r.items),
    diff: (id: string) => this.request<Diff>("GET", `/sessions/${enc(id)}/diff`),
    /** The session's branch: its commits, what is not committed yet, and the default commit message. */
    branch: (id: string) => this.request<BranchState>("GET", `/sessions/${enc(id)}/branch`),
    /** Commits the workspace's changes on the session's branch (409 `nothing_to_commit`, `session_busy`). */
    commit: (id: string, body: CommitBody = {}) =>
      this.request<CommitResult>("POST", `/sessions/${enc(id)}/commit`, body),
    /** Merges the session's branch into a branch of the user's local repository, or applies it as a
     * patch (409 `merge_conflict` with `details.files`, `worktree_dirty`). */
    merge: (id: string, body: Partial<MergeBody> = {}) =>
      this.request<MergeResult>("POST", `/sessions/${enc(id)}/merge`, body),
    /** Pushes the session's branch to its repository's remote (or `remote`), with the forge's credentials. */
    push: (id: string, body: PushBody = {}) =>
      this.request<PushResult>("POST", `/sessions/${enc(id)}/push`, body),
    /** Pushes and opens the branch's pull request (draft by default), or returns the open one. */
    openPullRequest: (id: string, body: Partial<PullRequestBody> = {}) =>
      this.request<PullRequestInfo>("POST", `/sessions/${enc(id)}/pr`, body),
    /** The session's pull request, state and checks read from its forge now (404 when it has none). */
    pullRequest: (id: string) => this.request<PullRequestInfo>("GET", `/sessions/${enc(id)}/pr`),
    permissions: (id: string) =>
      this.request<{ items: PermissionRequest[] }>("GET", `/sessions/${enc(id)}/permissions`).then(
        (r) => r.items,
      ),
    reply: (id: string, requestId: string, body: PermissionReplyBody) =>
      this.request<{ ok: true }>("POST", `/sessions/${enc(id)}/permissions/${enc(requestId)}`, body),
    events: (id: string, q: { after?: number; limit?: number } = {}) =>
      this.request<{ items: SessionEvent[]; lastSeq: number }>(
        "GET",
        `/sessions/${enc(id)}/events?after=${q.after ?? 0}&limit=${q.limit ?? 1000}`,
      ),
    /** Stored events after `after`, then live ones; resumes by Last-Event-ID across drops. */
    stream: (id: string, opts: StreamOptions = {}) => this.stream(id, opts),
  };

  tasks = {
    /** Resolves to the task; `created` is false when the idempotency key matched an earlier submit. */
    submit: async (body: CreateTaskBody) => {
      const res = await this.raw("POST", "/tasks", body);
      return { task: res.data as Task, created: res.status === 201 };
    },
    list: (q: { state?: TaskState; label?: string; limit?: number; cursor?: string } = {}) => {
      const p = new URLSearchParams();
      for (const [k, v] of Object.entries(q)) if (v !== undefined) p.set(k, String(v));
      const qs = p.toString();
      return this.request<TaskPage>("GET", `/tasks${qs ? `?${qs}` : ""}`);
    },
    get: (id: string) => this.request<Task>("GET", `/tasks/${enc(id)}`),
    cancel: (id: string) => this.request<Task>("POST", `/tasks/${enc(id)}/cancel`),
    retry: (id: string) => this.request<Task>("POST", `/tasks/${enc(id)}/retry`),
  };

  webhooks = {
    /** The response carries the signing secret; it is never shown again. */
    create: (body: CreateWebhookBody) => this.request<CreatedWebhook>("POST", "/webhooks", body),
    list: () => this.request<{ items: Webhook[] }>("GET", "/webhooks").then((r) => r.items),
    delete: (id: string) => this.request<Webhook>("DELETE", `/webhooks/${enc(id)}`),
    /** The organisation's secret that signs deliveries to tasks' own `webhook` URLs (admin). */
    secret: () => this.request<WebhookSecret>("GET", "/webhooks/secret"),
    deliveries: (id: string, q: DeliveryQuery = {}) =>
      this.request<DeliveryPage>("GET", `/webhooks/${enc(id)}/deliveries${query(q)}`),
    taskDeliveries: (taskId: string, q: DeliveryQuery = {}) =>
      this.request<DeliveryPage>("GET", `/tasks/${enc(taskId)}/deliveries${query(q)}`),
  };

  /** Browser sessions: trade a token for cookies (the page then needs no token), and back. */
  auth = {
    login: (token: string) => this.request<WebSession>("POST", "/auth/session", { token }),
    whoami: () => this.request<WebSession>("GET", "/auth/session"),
    logout: () => this.request<{ ok: true }>("POST", "/auth/logout"),
  };

  tokens = {
    create: (name: string, role: "admin" | "member" = "member") =>
      this.request<{ token: string; info: TokenInfo }>("POST", "/tokens", { name, role }),
    list: () => this.request<{ items: TokenInfo[] }>("GET", "/tokens").then((r) => r.items),
    revoke: (id: string) => this.request<TokenInfo>("DELETE", `/tokens/${enc(id)}`),
  };

  /**
   * The activity feed: a notice each time a session or task of the caller's org changes. Ends when
   * the connection does (no replay: re-read what you show and open it again).
   */
  async *activity(opts: { signal?: AbortSignal } = {}): AsyncGenerator<ActivityNotice> {
    const res = await this.fetch(`${this.baseUrl}/activity`, {
      headers: this.headers({ accept: "text/event-stream" }),
      signal: opts.signal,
      ...(this.opts.credentials ? { credentials: this.opts.credentials } : {}),
    });
    if (!res.ok) throw FlotillaError.fromBody(res.status, await res.json().catch(() => ({})));
    const queue: ActivityNotice[] = [];
    const parser = createParser({ onEvent: (ev) => queue.push(JSON.parse(ev.data) as ActivityNotice) });
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        parser.feed(decoder.decode(chunk, { stream: true }));
        while (queue.length) yield queue.shift()!;
      }
    } catch (e) {
      if (!opts.signal?.aborted) throw e;
    }
  }

  private async *stream(id: string, opts: StreamOptions): AsyncGenerator<SessionEvent> {
    let last = opts.after ?? 0;
    let attempt = 0;
    for (;;) {
      if (opts.signal?.aborted) return;
      const queue: SessionEvent[] = [];
      try {
        const res = await this.fetch(`${this.baseUrl}/sessions/${enc(id)}/events`, {
          headers: this.headers({ accept: "text/event-stream", "last-event-id": String(last) }),
          signal: opts.signal,
          ...(this.opts.credentials ? { credentials: this.opts.credentials } : {}),
        });
        if (!res.ok) {
          const text = await res.text();
          try {
            throw FlotillaError.fromBody(res.status, JSON.parse(text));
          } catch (e) {
            if (e instanceof FlotillaError) throw e;
            throw new FlotillaError("internal", `HTTP ${res.status}`);
          }
        }
        if (attempt > 0) opts.onReconnected?.(last);
        attempt = 0;
        const parser = createParser({
          onEvent: (ev) => {
            const e = JSON.parse(ev.data) as SessionEvent;
            queue.push(e);
          },
        });
        const decoder = new TextDecoder();
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          parser.feed(decoder.decode(chunk, { stream: true }));
          while (queue.length) {
            const e = queue.shift()!;
            if (e.seq <= last) continue;
            last = e.seq;
            yield e;
          }
        }
      } catch (e) {
        if (opts.signal?.aborted) return;
        if (e instanceof FlotillaError && e.status < 500) throw e;
        if (opts.reconnect === false) throw e;
        attempt++;
        opts.onReconnecting?.(attempt, e);
        await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 5000)));
        continue;
      }
      if (opts.reconnect === false) return;
      attempt++;
      opts.onReconnecting?.(attempt, new Error("stream ended"));
      await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 5000)));
    }
  }
}

const enc = encodeURIComponent;

type DeliveryQuery = { status?: DeliveryStatus; limit?: number; cursor?: string };
function query(q: Record<string, string | number | undefined>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined) p.set(k, String(v));
  const qs = p.toString();
  return qs ? `?${qs}` : "";
}
