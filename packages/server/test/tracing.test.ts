import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { gunzipSync } from "node:zlib";
import type { Task } from "@flotilla/contracts";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeRepo, startTestServer, type TestServer, waitFor } from "../../../test/support.ts";
import { flushTracing, SpanKind, tracingActive } from "../src/platform/tracing.ts";
import { scenario } from "./scenario.ts";

/**
 * Traces through real components: a control plane exporting over OTLP/HTTP (JSON) to a receiver in
 * this test, a task submitted with a `traceparent`, run by the scheduler on a real harness. The
 * spans of the request, the task's claim and run, the provisioning and the turn make one trace under
 * the caller's span; log lines and error bodies carry its id. Then the same without an endpoint:
 * nothing is exported, no body or line carries a trace id.
 */

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: { key: string; value: Record<string, unknown> }[];
  status?: { code?: number };
}

/** A tiny OTLP/HTTP receiver: every span POSTed to /v1/traces, and the service names they came with. */
async function startReceiver() {
  const spans: OtlpSpan[] = [];
  const services = new Set<string>();
  const contentTypes = new Set<string>();
  let posts = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (req.method !== "POST" || req.url !== "/v1/traces") {
        res.writeHead(404).end();
        return;
      }
      posts++;
      let body = Buffer.concat(chunks);
      if (req.headers["content-encoding"] === "gzip") body = gunzipSync(body);
      contentTypes.add(String(req.headers["content-type"]));
      const doc = JSON.parse(body.toString("utf8")) as {
        resourceSpans: {
          resource: { attributes: { key: string; value: { stringValue?: string } }[] };
          scopeSpans: { spans: OtlpSpan[] }[];
        }[];
      };
      for (const rs of doc.resourceSpans) {
        const name = rs.resource.attributes.find((a) => a.key === "service.name")?.value.stringValue;
        if (name) services.add(name);
        for (const ss of rs.scopeSpans) spans.push(...ss.spans);
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    spans,
    services,
    contentTypes,
    posts: () => posts,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const attr = (s: OtlpSpan, key: string) => {
  const v = s.attributes?.find((a) => a.key === key)?.value;
  return v ? (v.stringValue ?? v.intValue ?? v.boolValue ?? v.doubleValue) : undefined;
};

const hex = (bytes: number) => randomBytes(bytes).toString("hex");

async function submit(t: TestServer, body: object, headers: Record<string, string> = {}): Promise<Task> {
  const res = await fetch(`${t.url}/tasks`, {
    method: "POST",
    headers: { authorization: `Bearer ${t.token}`, "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(201);
  return (await res.json()) as Task;
}

function settled(t: TestServer, id: string): Promise<Task> {
  return waitFor(
    async () => {
      const task = await t.client.tasks.get(id);
      return ["succeeded", "failed", "cancelled", "timed_out", "dead"].includes(task.state)
        ? task
        : undefined;
    },
    120_000,
    `task ${id} to finish`,
  );
}

function logLines(t: TestServer): Record<string, unknown>[] {
  return readFileSync(t.logFile, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

let receiver: Awaited<ReturnType<typeof startReceiver>>;
let db: pg.Client | undefined;

beforeAll(async () => {
  receiver = await startReceiver();
});

afterAll(async () => {
  await db?.end();
  await receiver?.close();
});

describe("tracing", () => {
  it("API request → task claim and run → provisioning → turn: one trace under the caller's traceparent", async () => {
    const t = await startTestServer({
      scenario,
      config: { tracing: { endpoint: `${receiver.url}/v1/traces`, headers: {} } },
    });
    try {
      expect(tracingActive()).toBe(true);
      db = new pg.Client({ connectionString: t.db });
      await db.connect();
      const traceId = hex(16);
      const callerSpan = hex(8);
      const task = await submit(
        t,
        { repo: makeRepo(), prompt: "write hello please" },
        { traceparent: `00-${traceId}-${callerSpan}-01` },
      );
      const done = await settled(t, task.id);
      expect(done.state).toBe("succeeded");

      // Spans are exported once ended: flush until the turn's and the run's have arrived.
      const inTrace = () => receiver.spans.filter((s) => s.traceId === traceId);
      const one = (name: string) => {
        const found = inTrace().filter((s) => s.name === name);
        expect(found, name).toHaveLength(1);
        return found[0]!;
      };
      await waitFor(
        async () => {
          await flushTracing();
          const names = new Set(inTrace().map((s) => s.name));
          return names.has("task.run") && names.has("session.turn") && names.has("opencode.prompt");
        },
        60_000,
        "the task's spans to be exported",
      );
      expect(receiver.services).toContain("flotilla");
      expect([...receiver.contentTypes]).toEqual(["application/json"]);

      const api = one("POST /tasks");
      expect(api.parentSpanId).toBe(callerSpan);
      expect(api.kind).toBe(SpanKind.SERVER + 1); // OTLP's enum is the API's plus one
      expect(attr(api, "http.route")).toBe("/tasks");
      expect(Number(attr(api, "http.response.status_code"))).toBe(201);

      const claim = one("task.claim");
      const run = one("task.run");
      expect(claim.parentSpanId).toBe(api.spanId);
      expect(run.parentSpanId).toBe(api.spanId);
      expect(attr(run, "flotilla.task.id")).toBe(task.id);
      expect(attr(run, "flotilla.task.outcome")).toBe("succeeded");

      const create = one("session.create");
      expect(create.parentSpanId).toBe(run.spanId);
      expect(one("workspace.create").parentSpanId).toBe(create.spanId);
      const provision = one("session.provision");
      expect(provision.parentSpanId).toBe(create.spanId);
      const ensure = one("harness.ensure");
      expect(ensure.parentSpanId).toBe(provision.spanId);
      const start = one("harness.start");
      expect(start.parentSpanId).toBe(ensure.spanId);
      expect(one("runtime.start").parentSpanId).toBe(start.spanId);
      const turn = one("session.turn");
      expect(turn.parentSpanId).toBe(provision.spanId);
      expect(attr(turn, "flotilla.turn.outcome")).toBe("success");
      const prompt = one("opencode.prompt");
      expect(prompt.parentSpanId).toBe(turn.spanId);
      expect(prompt.kind).toBe(SpanKind.CLIENT + 1);

      // The trace context is findable in the database: the task's (its request's span), and the
      // session's current turn's (what the model gateway joins).
      const { rows } = await db.query(
        "select t.traceparent as task_tp, s.traceparent as session_tp from tasks t join sessions s on s.id = t.session_id where t.id = $1",
        [task.id],
      );
      expect(rows[0].task_tp).toBe(`00-${traceId}-${api.spanId}-01`);
      expect(rows[0].session_tp).toBe(`00-${traceId}-${turn.spanId}-01`);

      // The model gateway (a process of its own) joined the turn's trace: each of the turn's model
      // calls is a span under the turn, as many as the gateway recorded for the session.
      const { rows: calls } = await db.query(
        "select count(*)::int as n from gateway_calls where session_id = $1",
        [done.sessionId],
      );
      expect(calls[0].n).toBeGreaterThanOrEqual(1);
      const gatewaySpans = await waitFor(
        async () => {
          const found = inTrace().filter((s) => s.name === "gateway.call");
          return found.length >= calls[0].n && found;
        },
        30_000,
        "the gateway's spans (its own exporter sends them)",
      );
      expect(gatewaySpans).toHaveLength(calls[0].n);
      for (const g of gatewaySpans) {
        expect(g.parentSpanId).toBe(turn.spanId);
        expect(attr(g, "flotilla.session.id")).toBe(done.sessionId);
        expect(Number(attr(g, "http.response.status_code"))).toBe(200);
        expect(attr(g, "gen_ai.request.model")).toBe("scripted-1");
      }

      // A line the scheduler wrote during the run carries the run's trace and span.
      const finished = await waitFor(
        async () => logLines(t).find((l) => l.task === task.id && l.msg === "attempt finished"),
        30_000,
        "the attempt's last log line",
      );
      expect(finished).toMatchObject({ trace_id: traceId, span_id: run.spanId });

      // Error bodies carry the request's trace id: the caller's, when it sent one.
      const missing = await fetch(`${t.url}/tasks/tsk_nonesuch`, {
        headers: { authorization: `Bearer ${t.token}`, traceparent: `00-${traceId}-${hex(8)}-01` },
      });
      expect(missing.status).toBe(404);
      expect((await missing.json()).error).toMatchObject({ code: "not_found", traceId });
      // A request without one starts a trace of its own, named in the body and exported.
      const noRoute = await fetch(`${t.url}/no/such/route`, {
        headers: { authorization: `Bearer ${t.token}` },
      });
      expect(noRoute.status).toBe(404);
      const own = (await noRoute.json()).error.traceId as string;
      expect(own).toMatch(/^[0-9a-f]{32}$/);
      expect(own).not.toBe(traceId);
      const missingSpan = await waitFor(
        async () => {
          await flushTracing();
          return receiver.spans.find((s) => s.traceId === own);
        },
        30_000,
        "the 404's span",
      );
      expect(Number(attr(missingSpan, "http.response.status_code"))).toBe(404);
      expect(missingSpan.status?.code ?? 0).not.toBe(2); // a 4xx is not a server error
    } finally {
      await db?.end();
      db = undefined;
      await t.close();
    }
    expect(tracingActive()).toBe(false);
  });

  it("without an endpoint nothing is exported, and no body or log line carries a trace id", async () => {
    const before = receiver.posts();
    const t = await startTestServer({ scenario });
    try {
      expect(tracingActive()).toBe(false);
      const traceId = hex(16);
      const task = await submit(
        t,
        { repo: makeRepo(), prompt: "write hello please" },
        { traceparent: `00-${traceId}-${hex(8)}-01` },
      );
      expect((await settled(t, task.id)).state).toBe("succeeded");
      const missing = await fetch(`${t.url}/tasks/tsk_nonesuch`, {
        headers: { authorization: `Bearer ${t.token}`, traceparent: `00-${traceId}-${hex(8)}-01` },
      });
      expect(missing.status).toBe(404);
      const body = await missing.json();
      expect(body.error.code).toBe("not_found");
      expect(body.error).not.toHaveProperty("traceId");

      db = new pg.Client({ connectionString: t.db });
      await db.connect();
      const { rows } = await db.query(
        "select t.traceparent as task_tp, s.traceparent as session_tp from tasks t join sessions s on s.id = t.session_id where t.id = $1",
        [task.id],
      );
      expect(rows[0]).toEqual({ task_tp: null, session_tp: null });
      await waitFor(
        async () => logLines(t).some((l) => l.task === task.id && l.msg === "attempt finished"),
        30_000,
        "the attempt's last log line",
      );
      const lines = logLines(t);
      expect(lines.length).toBeGreaterThan(10);
      expect(lines.filter((l) => "trace_id" in l)).toEqual([]);
      await flushTracing();
    } finally {
      await db?.end();
      db = undefined;
      await t.close();
    }
    expect(receiver.posts()).toBe(before);
  });
});
