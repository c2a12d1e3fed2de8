/**
 * OpenTelemetry traces, exported over OTLP/HTTP (JSON) when an endpoint is configured, and off
 * otherwise: until `startTracing` registers a provider, every call below goes to the API's no-op
 * implementation (no span is recorded, no context is carried, nothing is exported).
 *
 * Spans are made by hand at our own boundaries (an API request, a task's claim and run, a session's
 * provisioning, a harness start, a turn, a prompt to OpenCode), not by auto-instrumentation: that
 * would add a span for every pg query and every internal HTTP call (health probes, the harness event
 * streams) and bury the few that say where a task's time went. Context flows between them through
 * AsyncLocalStorage; across processes and across time (an API request, then a task run by whichever
 * replica claims it) it is carried as a W3C `traceparent` string, stored with the task
 * (`tasks.traceparent`) and with a session's current turn (`sessions.traceparent`).
 */
import {
  type Attributes,
  type Context,
  context,
  isSpanContextValid,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import type { Logger } from "./logger.ts";

export { type Context, context, type Span, SpanKind, SpanStatusCode };

/** Where spans go: the full URL of an OTLP/HTTP traces endpoint (…/v1/traces), and its headers. */
export interface TracingConfig {
  endpoint: string | undefined;
  headers: Record<string, string>;
}

export const SERVICE_NAME = "flotilla";
const SCOPE = "flotilla";

let provider: NodeTracerProvider | undefined;
let users = 0;

/**
 * Registers the tracer provider, the W3C propagator and the AsyncLocalStorage context manager, if an
 * endpoint is configured; a no-op handle otherwise. One provider per process: a second start (two
 * control planes in one test process) shares it, and the last stop shuts it down. Stop flushes.
 * `component` names the process in the resource (`flotilla.component`: `control-plane`, `gateway`).
 */
export function startTracing(
  cfg: TracingConfig | undefined,
  log: Logger,
  opts: { component?: string } = {},
): { stop(): Promise<void> } {
  if (!cfg?.endpoint) return { stop: async () => {} };
  if (!provider) {
    const exporter = new OTLPTraceExporter({ url: cfg.endpoint, headers: cfg.headers });
    provider = new NodeTracerProvider({
      resource: resourceFromAttributes({
        [ATTR_SERVICE_NAME]: SERVICE_NAME,
        [ATTR_SERVICE_VERSION]: "0.1.0",
        "flotilla.component": opts.component ?? "control-plane",
      }),
      spanProcessors: [new BatchSpanProcessor(exporter)],
    });
    provider.register();
    log.info({ endpoint: cfg.endpoint }, "tracing: exporting spans over OTLP/HTTP");
  }
  users++;
  let stopped = false;
  return {
    stop: async () => {
      if (stopped) return;
      stopped = true;
      if (--users > 0 || !provider) return;
      const p = provider;
      provider = undefined;
      // The spans still buffered go out before the process does.
      await p.shutdown().catch((err: unknown) => log.warn({ err }, "tracing: could not flush spans"));
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}

/** Whether spans are being recorded and exported in this process. */
export const tracingActive = (): boolean => provider !== undefined;

/** Exports every span ended so far (tests; a process about to exit uses the handle's stop). */
export async function flushTracing(): Promise<void> {
  await provider?.forceFlush();
}

/** The tracer (looked up per use: the global provider changes when tracing starts and stops). */
export const tracer = () => trace.getTracer(SCOPE);

/** The active span's ids, when there is a valid one: what log lines and error bodies carry. */
export function activeTraceIds(
  ctx: Context = context.active(),
): { traceId: string; spanId: string } | undefined {
  const span = trace.getSpan(ctx);
  if (!span) return undefined;
  const sc = span.spanContext();
  return isSpanContextValid(sc) ? { traceId: sc.traceId, spanId: sc.spanId } : undefined;
}

/** The `traceparent` header value of a context (default: the active one); undefined when none. */
export function traceparentOf(ctx: Context = context.active()): string | undefined {
  if (!trace.getSpan(ctx)) return undefined;
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return carrier.traceparent;
}

/** A context whose parent is the span a stored `traceparent` names (the root context when none). */
export function contextFromTraceparent(
  traceparent: string | null | undefined,
  base: Context = ROOT_CONTEXT,
): Context {
  if (!traceparent) return base;
  return propagation.extract(base, { traceparent });
}

/** A context carried by incoming headers (`traceparent`, `tracestate`), under the root context. */
export function contextFromHeaders(get: (name: string) => string | undefined | null): Context {
  const carrier: Record<string, string> = {};
  for (const k of ["traceparent", "tracestate", "baggage"]) {
    const v = get(k);
    if (v) carrier[k] = v;
  }
  return Object.keys(carrier).length ? propagation.extract(ROOT_CONTEXT, carrier) : ROOT_CONTEXT;
}

/**
 * Runs `fn` in a new span (a child of `parent`, default the active context), ended when `fn`
 * settles; a throw marks it an error and records the exception.
 */
export async function inSpan<T>(
  name: string,
  attributes: Attributes,
  fn: (span: Span) => Promise<T>,
  opts: { kind?: SpanKind; parent?: Context } = {},
): Promise<T> {
  const parent = opts.parent ?? context.active();
  const span = tracer().startSpan(name, { kind: opts.kind ?? SpanKind.INTERNAL, attributes }, parent);
  try {
    return await context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (e) {
    failSpan(span, e);
    throw e;
  } finally {
    span.end();
  }
}

/** Marks a span failed, with the error as an exception event. */
export function failSpan(span: Span, e: unknown): void {
  if (!span.isRecording()) return;
  const err = e instanceof Error ? e : new Error(String(e));
  span.recordException(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
}

/**
 * For the model gateway (another process, called by OpenCode, which sends no trace context): a span
 * whose parent is the `traceparent` of the call's session (`sessions.traceparent`, written when the
 * session's current turn started) and the context to run the call in, so that its log lines carry
 * the turn's trace id. A null or malformed traceparent starts a root span; with tracing off the span
 * is a no-op. The caller ends the span.
 */
export function startSpanFromTraceparent(
  name: string,
  traceparent: string | null | undefined,
  attributes: Attributes = {},
  kind: SpanKind = SpanKind.SERVER,
): { span: Span; context: Context } {
  const parent = contextFromTraceparent(traceparent);
  const span = tracer().startSpan(name, { kind, attributes }, parent);
  return { span, context: trace.setSpan(parent, span) };
}

/** Runs `fn` outside any trace: for long-lived work (a harness's event stream, timers) that a
 * request or a task only happens to start, and whose log lines are not that request's. */
export function detached<T>(fn: () => T): T {
  return context.with(ROOT_CONTEXT, fn);
}

/** A `fetch` that sends the active trace context along (`traceparent`): for the OpenCode client. */
export function tracedFetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
  const req = input instanceof Request && !init ? input : new Request(input, init);
  // As the SDK's own default fetch does: a prompt's request may take longer than any timeout.
  (req as unknown as { timeout?: boolean }).timeout = false;
  const ctx = context.active();
  if (trace.getSpan(ctx)) propagation.inject(ctx, req.headers, { set: (h, k, v) => h.set(k, v) });
  return fetch(req);
}
