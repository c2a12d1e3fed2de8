import { createHash, randomBytes } from "node:crypto";
import { type BudgetName, newId } from "@flotilla/contracts";
import { Hono } from "hono";
import type { GatewayLimits } from "../config/config.ts";
import type { Db } from "../platform/db/pool.ts";
import type { Logger } from "../platform/logger.ts";
import { registerSecret } from "../platform/redact.ts";
import { context, type Span, SpanStatusCode, startSpanFromTraceparent } from "../platform/tracing.ts";
import { type SerializedUpstream, type Upstream, upstreamMap } from "./upstreams.ts";
import { UsageMeter } from "./usage.ts";
import { BUDGET_UNIT, type BudgetWarning, BudgetWarnings } from "./warnings.ts";

/** Set on a refusal for budget: the failure's name for whoever reads the agent's error. */
export const BUDGET_HEADER = "x-flotilla-error";

/** 402: not a status OpenCode retries. The header names the failure for Flotilla's reading of the
 * turn's error (agents/opencode/translate.ts). */
function refuseBudget(why: string): Response {
  const res = refuse(402, "budget_exceeded", why);
  res.headers.set(BUDGET_HEADER, "budget_exceeded");
  return res;
}

/** An upstream's keys, known to the redaction layer (platform/redact.ts). */
export function registerKeys(u: Upstream | SerializedUpstream): void {
  registerSecret(u.key);
  for (const k of Object.values(u.projectKeys ?? {})) registerSecret(k);
}

/** A harness's gateway credential: shown to the harness once, kept here only as this hash. */
export function newGatewayToken(): { token: string; hash: string } {
  const token = `fgw_${randomBytes(24).toString("base64url")}`;
  return { token, hash: hashToken(token) };
}

const hashToken = (t: string) => createHash("sha256").update(t).digest("hex");

/** Who is calling: a live harness, on behalf of one session it serves. */
interface Caller {
  harnessId: string;
  sessionId: string;
  projectId: string;
  taskId: string | null;
  /** The API token that submitted the session's task (a session made directly has none on record). */
  apiTokenId: string | null;
  /** The session's current turn's trace context (W3C traceparent), when tracing is on. */
  traceparent: string | null;
  /** What the project's calls cost today (UTC), when a daily limit is set. */
  projectToday: number | null;
  /** What the API token's calls cost today (UTC), when a daily limit is set and there is a token. */
  tokenToday: number | null;
  budget: {
    maxCostUsd: number | null;
    maxTokens: number | null;
    spentUsd: number;
    spentTokens: number;
    mode: "hard" | "warn";
  } | null;
  /** The warn-mode budgets a warning was given for already (the task's; today's for the daily ones). */
  warned: Set<string>;
}

/** A budget the call would go past: refused in hard mode, let through with a warning in warn mode. */
interface Crossing {
  budget: BudgetName;
  limit: number;
  spent: number;
  message: string;
}

// Hop-by-hop headers, the caller's credentials, and sizes the gateway recomputes: never forwarded.
const DROP_REQUEST = new Set([
  "host",
  "connection",
  "keep-alive",
  "transfer-encoding",
  "content-length",
  "authorization",
  "x-api-key",
  "x-goog-api-key",
  "accept-encoding",
]);
const DROP_RESPONSE = new Set([
  "connection",
  "keep-alive",
  "transfer-encoding",
  "content-length",
  "content-encoding",
]);

/** An error in the shape OpenAI-style clients read (`error.message`), with our code beside it. */
function refuse(status: number, code: string, message: string): Response {
  return Response.json({ error: { code, type: code, message, retriable: status >= 500 } }, { status });
}

/**
 * The model gateway: every model call a harness makes comes here, with the harness's gateway token
 * in place of a key. The gateway checks the token (a live harness's), binds the call to the session
 * it is for (OpenCode names its session in `x-session-affinity`; that session must be on the
 * harness's shard and not deleted), swaps in the real key, and streams the provider's answer back
 * as it arrives while counting its tokens; each call is recorded in `gateway_calls`.
 *
 * Written by hand rather than with a gateway library: it is a pass-through of a few provider paths
 * whose only logic is ours (who may call, for which session, what it cost); Portkey's gateway brings
 * its own routing, config and key handling, which would sit beside ours rather than replace it.
 */
export class ModelGateway {
  readonly app = new Hono();
  private lastPing = Date.now();
  private readonly warnings: BudgetWarnings;

  constructor(
    private readonly db: Db,
    private upstreams: Map<string, Upstream>,
    private readonly log: Logger,
    control: { secret: string; fingerprint: string },
    private readonly limits: GatewayLimits = {},
  ) {
    this.warnings = new BudgetWarnings(db, log);
    // The control plane's own calls: is this the gateway it started (its fingerprint), and a ping
    // that says it is still there (a gateway nobody pings for a while exits; see main.ts).
    this.app.get("/_gateway/healthz", () => Response.json({ ok: true, fingerprint: control.fingerprint }));
    this.app.post("/_gateway/ping", (c) => {
      if (c.req.header("x-flotilla-control") !== control.secret)
        return refuse(401, "unauthorized", "not the control plane");
      this.lastPing = Date.now();
      return c.body(null, 204);
    });
    // The control plane's current providers and keys (a key set in the secret store reaches the
    // gateway here, without a restart).
    this.app.put("/_gateway/upstreams", async (c) => {
      if (c.req.header("x-flotilla-control") !== control.secret)
        return refuse(401, "unauthorized", "not the control plane");
      this.upstreams = upstreamMap((await c.req.json()) as SerializedUpstream[]);
      for (const u of this.upstreams.values()) registerKeys(u);
      return c.body(null, 204);
    });
    this.app.all("/gateway/:provider/*", (c) => this.handle(c.req.raw, c.req.param("provider")));
    this.app.notFound(() => refuse(404, "not_found", "not a gateway route"));
    this.app.onError((err) => {
      this.log.error({ err }, "gateway error");
      return refuse(500, "internal", "the model gateway failed");
    });
  }

  /** How long since the control plane last said it is there. */
  sincePing(): number {
    return Date.now() - this.lastPing;
  }

  private credential(req: Request, url: URL): string | undefined {
    const auth = req.headers.get("authorization");
    if (auth?.toLowerCase().startsWith("bearer ")) return auth.slice(7).trim();
    return (
      req.headers.get("x-api-key") ??
      req.headers.get("x-goog-api-key") ??
      url.searchParams.get("key") ??
      undefined
    );
  }

  private async caller(token: string, opencodeSession: string | null): Promise<Caller | string> {
    // The task is the session's (its latest attempt's session); its spend counts every attempt.
    const { rows } = await this.db.query(
      `select h.id as harness_id, s.id as session_id, s.project_id,
              s.traceparent, t.id as task_id, t.token_id, t.max_cost_usd, t.max_tokens, t.budget_mode, spent.cost, spent.tokens,
              case when $3 then (select coalesce(sum(g.cost_usd), 0)::float8 from gateway_calls g
                                  where g.project_id = s.project_id
                                    and g.started_at >= date_trunc('day', now() at time zone 'UTC') at time zone 'UTC')
              end as project_today,
              case when $4 and t.token_id is not null then (select coalesce(sum(g.cost_usd), 0)::float8 from gateway_calls g
                                  where g.api_token_id = t.token_id
                                    and g.started_at >= date_trunc('day', now() at time zone 'UTC') at time zone 'UTC')
              end as token_today,
              case when t.budget_mode = 'warn' or $5 then array(
                select distinct unnest(g.budget_warnings) from gateway_calls g
                 where g.budget_warnings is not null
                   and (g.task_id = t.id
                        or (g.started_at >= date_trunc('day', now() at time zone 'UTC') at time zone 'UTC'
                            and (g.project_id = s.project_id or g.api_token_id = t.token_id)))
              ) end as warned
         from harnesses h
         left join sessions s on s.opencode_id = $2 and s.deleted_at is null
              and s.workspace_id in (select w.id from workspaces w where w.shard_id = h.shard_id)
         left join lateral (select t.id, t.token_id, t.max_cost_usd, t.max_tokens, t.budget_mode from tasks t
                             where t.session_id = s.id order by t.id desc limit 1) t on true
         left join lateral (select coalesce(sum(g.cost_usd), 0)::float8 as cost,
                                   coalesce(sum(g.input_tokens + g.output_tokens), 0)::float8 as tokens
                              from gateway_calls g
                             where g.task_id = t.id and (t.max_cost_usd is not null or t.max_tokens is not null)) spent on true
        where h.gateway_token_hash = $1 and h.state in ('starting', 'ready')`,
      [
        hashToken(token),
        opencodeSession ?? "",
        this.limits.projectDailyUsd !== undefined,
        this.limits.tokenDailyUsd !== undefined,
        this.limits.dailyMode === "warn",
      ],
    );
    const r = rows[0];
    if (!r) return "the gateway token is not a live harness's";
    if (!r.session_id) return "the call names no session this harness serves";
    return {
      harnessId: r.harness_id,
      sessionId: r.session_id,
      projectId: r.project_id,
      taskId: r.task_id,
      apiTokenId: r.token_id,
      traceparent: r.traceparent,
      projectToday: r.project_today,
      tokenToday: r.token_today,
      budget:
        r.max_cost_usd !== null || r.max_tokens !== null
          ? {
              maxCostUsd: r.max_cost_usd,
              maxTokens: r.max_tokens === null ? null : Number(r.max_tokens),
              spentUsd: r.cost ?? 0,
              spentTokens: r.tokens ?? 0,
              mode: r.budget_mode,
            }
          : null,
      warned: new Set(r.warned ?? []),
    };
  }

  // Calls in the last minute, by `project:<id>` and `token:<id>`: this gateway's own count (each
  // replica runs its own gateway, so a limit holds per replica).
  private readonly recent = new Map<string, number[]>();

  /** Requests per minute: refused with how long until the oldest call in the window leaves it. */
  private rateLimited(who: Caller): { message: string; retryAfterS: number } | null {
    const now = Date.now();
    const checks: [string, number | undefined, string][] = [
      [`project:${who.projectId}`, this.limits.projectRpm, "projectRpm"],
      [`token:${who.apiTokenId}`, who.apiTokenId ? this.limits.tokenRpm : undefined, "tokenRpm"],
    ];
    for (const [key, rpm, name] of checks) {
      if (rpm === undefined) continue;
      const times = (this.recent.get(key) ?? []).filter((t) => t > now - 60_000);
      // A key whose minute has passed is dropped, not kept empty.
      if (times.length) this.recent.set(key, times);
      else this.recent.delete(key);
      if (times.length >= rpm)
        return {
          message: `rate limit ${name} ${rpm}/min reached`,
          retryAfterS: Math.max(1, Math.ceil((times[0]! + 60_000 - now) / 1000)),
        };
    }
    for (const [key, rpm] of checks)
      if (rpm !== undefined) this.recent.set(key, [...(this.recent.get(key) ?? []), now]);
    return null;
  }

  /**
   * A task's budgets, judged before the call: crossed when even its input would go past one;
   * otherwise its output is capped (the request's output limit) at what is left, so a provider
   * that honours the limit cannot charge past the budget. The input is estimated at 4 bytes of the
   * request per token (what is sent, tool definitions and system prompt included).
   */
  private judge(
    b: NonNullable<Caller["budget"]>,
    price: Upstream["cost"][string] | undefined,
    requestBytes: number,
  ): { crossed: Crossing } | { maxOutput: number | undefined } {
    const input = Math.ceil(requestBytes / 4);
    let maxOutput: number | undefined;
    if (b.maxCostUsd !== null && price) {
      const left = b.maxCostUsd - b.spentUsd;
      const room = Math.floor(((left - (input * price.input) / 1e6) * 1e6) / price.output);
      if (room < 1)
        return {
          crossed: {
            budget: "maxCostUsd",
            limit: b.maxCostUsd,
            spent: b.spentUsd,
            message: `task budget maxCostUsd $${b.maxCostUsd} reached: $${b.spentUsd.toFixed(6)} spent, and this call's ~${input} input tokens leave no room for an answer`,
          },
        };
      maxOutput = room;
    }
    if (b.maxTokens !== null) {
      const room = b.maxTokens - b.spentTokens - input;
      if (room < 1)
        return {
          crossed: {
            budget: "maxTokens",
            limit: b.maxTokens,
            spent: b.spentTokens,
            message: `task budget maxTokens ${b.maxTokens} reached: ${b.spentTokens} spent, and this call's ~${input} input tokens leave no room for an answer`,
          },
        };
      maxOutput = Math.min(maxOutput ?? room, room);
    }
    return { maxOutput };
  }

  private async handle(req: Request, providerId: string): Promise<Response> {
    const t0 = performance.now();
    const url = new URL(req.url);
    const token = this.credential(req, url);
    if (!token) return refuse(401, "unauthorized", "no gateway token");
    const who = await this.caller(
      token,
      req.headers.get("x-session-affinity") ?? req.headers.get("x-session-id"),
    );
    if (typeof who === "string") return refuse(401, "unauthorized", who);
    // The call's span joins the trace of the turn it serves (the session's traceparent, written
    // when the turn started); its log lines carry that trace's id.
    const { span, context: ctx } = startSpanFromTraceparent("gateway.call", who.traceparent, {
      "flotilla.session.id": who.sessionId,
      "flotilla.task.id": who.taskId ?? "",
      "flotilla.provider": providerId,
    });
    return context.with(ctx, () => this.serve(req, url, providerId, who, span, t0));
  }

  private async serve(
    req: Request,
    url: URL,
    providerId: string,
    who: Caller,
    span: Span,
    t0: number,
  ): Promise<Response> {
    const up = this.upstreams.get(providerId);
    if (!up) {
      span.end();
      return refuse(404, "not_found", `the gateway fronts no provider '${providerId}'`);
    }

    const rest = url.pathname.slice(`/gateway/${providerId}`.length);
    const search = new URLSearchParams(url.search);
    search.delete("key");
    const target = `${up.baseURL}${rest}${search.size ? `?${search}` : ""}`;
    let body: Uint8Array<ArrayBuffer> | undefined;
    let doc: Record<string, unknown> | undefined;
    let model: string | undefined;
    let stream = rest.includes(":streamGenerateContent");
    if (req.method !== "GET" && req.method !== "HEAD") {
      body = new Uint8Array(await req.arrayBuffer());
      if ((req.headers.get("content-type") ?? "").includes("json") && body.length) {
        try {
          doc = JSON.parse(new TextDecoder().decode(body)) as Record<string, unknown>;
        } catch {
          // Not JSON after all: forwarded as it came, the provider answers it.
        }
      }
    }
    let edited = false;
    if (doc) {
      if (typeof doc.model === "string") model = doc.model;
      stream ||= doc.stream === true;
      // A chat-completions stream reports usage only when asked: ask, so every call is counted.
      if (doc.stream === true && rest.endsWith("/chat/completions")) {
        const opts = (doc.stream_options ?? {}) as Record<string, unknown>;
        if (opts.include_usage !== true) {
          doc.stream_options = { ...opts, include_usage: true };
          edited = true;
        }
      }
    }
    if (model) span.setAttribute("gen_ai.request.model", model);
    if (model && up.models && !up.models.has(model)) {
      span.end();
      return refuse(403, "forbidden", `model '${model}' is not offered by provider '${providerId}'`);
    }
    // Warn-mode budgets this call crosses: it goes through, and each is said once.
    const warnings: BudgetWarning[] = [];
    // Every way a call ends after here records it, once; its span ends with it.
    const record = async (
      status: number,
      usage: UsageMeter | null,
      firstByteMs: number | null,
      error?: string,
    ) => {
      await this.record(who, up, model, rest, status, stream, usage, firstByteMs, performance.now() - t0, {
        error,
        warnings: warnings.map((w) => w.budget),
      });
      span.setAttribute("http.response.status_code", status);
      if (status >= 500 || status === 402 || status === 429 || error)
        span.setStatus({ code: SpanStatusCode.ERROR, message: error ?? `HTTP ${status}` });
      span.end();
    };
    const warnOnce = (c: Crossing) => {
      if (who.warned.has(c.budget)) return;
      who.warned.add(c.budget);
      warnings.push({ ...c, unit: BUDGET_UNIT[c.budget], taskId: who.taskId });
    };

    const limited = this.rateLimited(who);
    if (limited) {
      await record(429, null, null, `rate_limited: ${limited.message}`);
      const res = refuse(429, "rate_limited", limited.message);
      res.headers.set("retry-after", String(limited.retryAfterS));
      return res;
    }
    const daily: [BudgetName, string, number | undefined, number | null][] = [
      ["projectDailyUsd", "project budget", this.limits.projectDailyUsd, who.projectToday],
      ["tokenDailyUsd", "token budget", this.limits.tokenDailyUsd, who.tokenToday],
    ];
    for (const [budget, what, limit, spent] of daily) {
      if (limit === undefined || spent === null || spent < limit) continue;
      const why = `${what} ${budget} $${limit} reached for today (UTC): $${spent.toFixed(6)} spent`;
      if (this.limits.dailyMode === "warn") {
        warnOnce({ budget, limit, spent, message: why });
        continue;
      }
      await record(402, null, null, `budget_exceeded: ${why}`);
      return refuseBudget(why);
    }
    if (who.budget) {
      const verdict = this.judge(who.budget, model ? up.cost[model] : undefined, body?.length ?? 0);
      if ("crossed" in verdict && who.budget.mode === "warn") warnOnce(verdict.crossed);
      else if ("crossed" in verdict) {
        const why = verdict.crossed.message;
        await record(402, null, null, `budget_exceeded: ${why}`);
        this.log.info({ session: who.sessionId, task: who.taskId, why }, "gateway: budget refused a call");
        return refuseBudget(why);
      }
      // Warn mode caps nothing: the call goes through as asked.
      else if (verdict.maxOutput !== undefined && doc && who.budget.mode === "hard") {
        const key =
          "max_completion_tokens" in doc
            ? "max_completion_tokens"
            : "max_output_tokens" in doc
              ? "max_output_tokens"
              : "max_tokens";
        const asked = typeof doc[key] === "number" ? (doc[key] as number) : Infinity;
        if (verdict.maxOutput < asked) {
          doc[key] = verdict.maxOutput;
          edited = true;
        }
      }
    }
    if (edited && doc) body = new TextEncoder().encode(JSON.stringify(doc));
    // Said before the call goes out: whoever watches the session sees it as the spending happens.
    for (const w of warnings) await this.warnings.warn(who.sessionId, w);

    const headers = new Headers();
    req.headers.forEach((v, k) => {
      if (!DROP_REQUEST.has(k)) headers.set(k, v);
    });
    const key = up.projectKeys?.[who.projectId] ?? up.key;
    if (key) {
      if (up.keyStyle === "bearer") headers.set("authorization", `Bearer ${key}`);
      else headers.set(up.keyStyle, key);
    }
    let res: Response;
    try {
      res = await fetch(target, {
        method: req.method,
        headers,
        body,
        signal: req.signal,
        redirect: "manual",
      });
    } catch (e) {
      const aborted = req.signal.aborted;
      void record(aborted ? 499 : 502, null, null, aborted ? "caller went away" : "provider unreachable");
      this.log.warn({ provider: providerId, err: (e as Error).message }, "gateway: provider unreachable");
      return refuse(502, "harness_error", `provider '${providerId}' could not be reached`);
    }
    const outHeaders = new Headers();
    res.headers.forEach((v, k) => {
      if (!DROP_RESPONSE.has(k)) outHeaders.set(k, v);
    });
    if (!res.body) {
      void record(res.status, null, performance.now() - t0);
      return new Response(null, { status: res.status, headers: outHeaders });
    }
    const meter = new UsageMeter((res.headers.get("content-type") ?? "").includes("text/event-stream"));
    const reader = res.body.getReader();
    let firstByte: number | null = null;
    let done = false;
    const finish = async (error?: string) => {
      if (done) return;
      done = true;
      await record(res.status, meter, firstByte, error);
    };
    // Each chunk goes on as it comes: pull-based, so nothing is read ahead of the harness.
    const out = new ReadableStream<Uint8Array>({
      async pull(ctl) {
        try {
          const { done: end, value } = await reader.read();
          if (end) {
            // On record before the harness sees the end: its next call is judged with this one counted.
            await finish();
            ctl.close();
            return;
          }
          firstByte ??= performance.now() - t0;
          meter.feed(value);
          ctl.enqueue(value);
        } catch (e) {
          ctl.error(e);
          void finish("stream broke");
        }
      },
      cancel(reason) {
        void finish("caller went away");
        return reader.cancel(reason);
      },
    });
    return new Response(out, { status: res.status, headers: outHeaders });
  }

  private async record(
    who: Caller,
    up: Upstream,
    model: string | undefined,
    path: string,
    status: number,
    stream: boolean,
    meter: UsageMeter | null,
    firstByteMs: number | null,
    latencyMs: number,
    { error, warnings }: { error?: string; warnings: string[] },
  ): Promise<void> {
    const u = meter?.end() ?? { inputTokens: 0, outputTokens: 0, cachedTokens: 0 };
    const price = model ? up.cost[model] : undefined;
    const cost = price
      ? ((u.inputTokens - u.cachedTokens) * price.input +
          u.cachedTokens * (price.cacheRead ?? price.input) +
          u.outputTokens * price.output) /
        1e6
      : 0;
    try {
      await this.db.query(
        `insert into gateway_calls (id, session_id, task_id, project_id, harness_id, provider, model, path,
           status, stream, input_tokens, output_tokens, cached_tokens, cost_usd, first_byte_ms, latency_ms, error,
           api_token_id, budget_warnings)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`,
        [
          newId("gwc"),
          who.sessionId,
          who.taskId,
          who.projectId,
          who.harnessId,
          up.id,
          model ?? null,
          path,
          status,
          stream,
          u.inputTokens,
          u.outputTokens,
          u.cachedTokens,
          cost,
          firstByteMs === null ? null : Math.round(firstByteMs),
          Math.round(latencyMs),
          error ?? null,
          who.apiTokenId,
          warnings.length ? warnings : null,
        ],
      );
    } catch (err) {
      this.log.error({ err }, "gateway: a call could not be recorded");
    }
    this.log.debug(
      { session: who.sessionId, provider: up.id, model, status, tokens: u, ms: Math.round(latencyMs) },
      "gateway call",
    );
  }
}
