import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { SessionEvent } from "@flotilla/contracts";
import { freePort } from "@flotilla/server";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  collectUntil,
  makeRepo,
  ROOT,
  startTestServer,
  type TestServer,
  tempDir,
  untilTurnFinished,
  waitFor,
} from "../../../test/support.ts";

/**
 * `/metrics` scraped by a real Prometheus (Debian's `prometheus` package): after sessions in two
 * projects ran through the model gateway, a PromQL query for the gateway's output tokens by
 * project returns exactly what the gateway recorded for each. Then the latencies the control plane
 * observes itself (claims, provisioning, event lag) against what the database says happened.
 */

let t: TestServer;
let db: pg.Client;
let prometheus: ChildProcess | undefined;
/** performance.now() once the server was up: nothing it timed can have taken longer in all. */
let up: number;

beforeAll(async () => {
  t = await startTestServer({
    scenario: {
      rules: [{ match: "^two", steps: [{ text: "one two three four" }] }],
      default: [{ text: "ok" }],
    },
  });
  db = new pg.Client({ connectionString: t.db });
  await db.connect();
  up = performance.now();
}, 120_000);

/** One scrape: the value of a series, named as the exposition writes it (labels included). */
async function scrape(): Promise<(series: string) => number | undefined> {
  const res = await fetch(`${t.url}/metrics`, {
    headers: { authorization: `Bearer ${t.server.services.metricsToken}` },
  });
  const lines = (await res.text()).split("\n");
  return (series) => {
    const line = lines.find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };
}

/**
 * A session's SSE stream read by hand: `live()` resolves at the server's `: live` comment (the
 * replay is over: what comes next was published after), `until()` reads events until one matches.
 */
async function openStream(sessionId: string, after: number) {
  const ac = new AbortController();
  const res = await fetch(`${t.url}/sessions/${sessionId}/events?after=${after}`, {
    headers: { authorization: `Bearer ${t.token}`, accept: "text/event-stream" },
    signal: ac.signal,
  });
  expect(res.status).toBe(200);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  const frame = async (): Promise<string> => {
    for (;;) {
      const end = buffer.indexOf("\n\n");
      if (end >= 0) {
        const f = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        return f;
      }
      const { value, done } = await reader.read();
      if (done) throw new Error("the stream ended");
      buffer += value;
    }
  };
  const events: SessionEvent[] = [];
  return {
    events,
    live: async () => {
      while ((await frame()) !== ": live");
    },
    until: async (stop: (e: SessionEvent) => boolean) => {
      for (;;) {
        const data = (await frame())
          .split("\n")
          .filter((l) => l.startsWith("data: "))
          .map((l) => l.slice(6))
          .join("\n");
        if (!data) continue;
        const e = JSON.parse(data) as SessionEvent;
        events.push(e);
        if (stop(e)) return;
      }
    },
    close: () => ac.abort(),
  };
}

afterAll(async () => {
  if (prometheus && prometheus.exitCode === null) {
    const gone = new Promise((r) => prometheus!.once("exit", r));
    prometheus.kill("SIGTERM");
    await gone;
  }
  await db?.end();
  await t?.close();
});

describe("metrics", () => {
  it("/metrics takes only the scrape token, and names routes by their pattern", async () => {
    const scrape = t.server.services.metricsToken;
    expect((await fetch(`${t.url}/metrics`)).status).toBe(401);
    // An API token, even the admin's, is not a scrape token.
    const admin = await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${t.token}` } });
    expect(admin.status).toBe(401);
    expect((await admin.json()).error.code).toBe("unauthorized");
    await t.client.sessions.get("ses_nonesuch").catch(() => {});
    const res = await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${scrape}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text).toContain('flotilla_http_requests_total{method="GET",route="/sessions/:id",status="404"} 1');
    expect(text).not.toContain("ses_nonesuch");
    expect(text).toMatch(/^flotilla_process_resident_memory_bytes \d+/m);

    // The Grafana dashboard shipped in the repository charts only metrics that exist.
    const dashboard = JSON.parse(readFileSync(join(ROOT, "deploy/grafana/flotilla.json"), "utf8")) as {
      panels: { title: string; targets: { expr: string }[] }[];
    };
    const exposed = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
    const used = dashboard.panels.flatMap((p) =>
      p.targets.flatMap((t) => [...t.expr.matchAll(/flotilla_\w+/g)].map((m) => m[0])),
    );
    expect(used.length).toBeGreaterThan(10);
    for (const name of used) expect(exposed, name).toContain(name.replace(/_bucket$/, ""));
  });

  it("a real Prometheus scrapes it; gateway output tokens by project match what the gateway recorded", {
    timeout: 300_000,
  }, async () => {
    // Two projects (two repositories), two sessions each through the gateway.
    const repos = [makeRepo(), makeRepo()];
    for (const repo of repos) {
      const s = await t.client.sessions.create({ repo, prompt: "two words please" });
      await collectUntil(t.client, s.id, untilTurnFinished(), { timeoutMs: 180_000 });
      await t.client.sessions.send(s.id, { text: "two more" });
      await collectUntil(t.client, s.id, untilTurnFinished(2), { timeoutMs: 120_000 });
    }
    const { rows } = await db.query(
      "select project_id, sum(output_tokens)::float8 as output, count(*)::int as calls from gateway_calls where status = 200 group by project_id",
    );
    expect(rows.length).toBe(2);
    const expected = Object.fromEntries(rows.map((r) => [r.project_id, r.output]));

    const dir = tempDir("prometheus");
    const port = await freePort();
    const target = new URL(t.url).host;
    writeFileSync(
      join(dir, "prometheus.yml"),
      [
        "global: { scrape_interval: 1s, evaluation_interval: 1s }",
        "scrape_configs:",
        "  - job_name: flotilla",
        "    metrics_path: /metrics",
        `    authorization: { type: Bearer, credentials: ${t.server.services.metricsToken} }`,
        `    static_configs: [{ targets: ["${target}"] }]`,
      ].join("\n"),
    );
    prometheus = spawn(
      "prometheus",
      [
        `--config.file=${join(dir, "prometheus.yml")}`,
        `--storage.tsdb.path=${join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdio: "ignore" },
    );
    const query = async (promql: string) => {
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(promql)}`);
      const body = (await res.json()) as {
        status: string;
        data: { result: { metric: Record<string, string>; value: [number, string] }[] };
      };
      return body.data.result;
    };
    // Scraped (target up), and the sums by project are the database's.
    await waitFor(async () => (await query('up{job="flotilla"}'))[0]?.value[1] === "1", 60_000, "target up");
    const byProject = await waitFor(
      async () => {
        const result = await query('sum by (project) (flotilla_gateway_tokens_total{kind="output"})');
        return result.length === 2 && result;
      },
      60_000,
      "gateway tokens by project",
    );
    expect(Object.fromEntries(byProject.map((r) => [r.metric.project, Number(r.value[1])]))).toEqual(
      expected,
    );
    const calls = await query("sum by (project) (flotilla_gateway_calls_total)");
    expect(Object.fromEntries(calls.map((r) => [r.metric.project, Number(r.value[1])]))).toEqual(
      Object.fromEntries(rows.map((r) => [r.project_id, r.calls])),
    );
    const sessions = await query('flotilla_sessions{status="idle"}');
    expect(Number(sessions[0]?.value[1])).toBe(2);
    // Every expression the shipped dashboard charts is PromQL this Prometheus accepts.
    const dashboard = JSON.parse(readFileSync(join(ROOT, "deploy/grafana/flotilla.json"), "utf8")) as {
      panels: { targets: { expr: string }[] }[];
    };
    for (const { expr } of dashboard.panels.flatMap((p) => p.targets)) {
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(expr)}`);
      expect(((await res.json()) as { status: string }).status, expr).toBe("success");
    }
  });

  it("times claims, provisioning and event lag: one observation per claim, per session, per harness event, per live event streamed", {
    timeout: 300_000,
  }, async () => {
    // A task: claimed once by the scheduler, run as a session of its own.
    const submitted = performance.now();
    const { task } = await t.client.tasks.submit({ repo: makeRepo(), prompt: "two words please" });
    const done = await waitFor(
      async () => {
        const x = await t.client.tasks.get(task.id);
        return ["succeeded", "failed", "cancelled", "timed_out", "dead"].includes(x.state) && x;
      },
      180_000,
      "the task to finish",
    );
    const waited = (performance.now() - submitted) / 1000;
    expect(done.state).toBe("succeeded");
    let m = await scrape();

    // Claims: as many as attempts were started (this file's only task), each no longer than the
    // test waited for the whole task (seconds, not milliseconds).
    const { rows: attempts } = await db.query("select count(*)::int as n from task_attempts");
    expect(attempts[0].n).toBe(1);
    expect(m("flotilla_task_claim_seconds_count")).toBe(1);
    expect(m("flotilla_task_claim_seconds_sum")).toBeGreaterThanOrEqual(0);
    expect(m("flotilla_task_claim_seconds_sum")).toBeLessThan(waited);

    // Provisioning: one per session made (the earlier test's and the task's), by the runtime of
    // the session's shard, none failed; they ran one after another, so in all no longer than the
    // server has been up.
    const { rows: made } = await db.query(
      `select sh.runtime, count(*)::int as n from sessions s join workspaces w on w.id = s.workspace_id
       join shards sh on sh.id = w.shard_id group by sh.runtime`,
    );
    expect(made.length).toBeGreaterThan(0);
    const upFor = (performance.now() - up) / 1000;
    for (const r of made) {
      const labels = `{runtime="${r.runtime}"}`;
      expect(m(`flotilla_session_provisioning_seconds_count${labels}`), r.runtime).toBe(r.n);
      expect(m(`flotilla_session_provisioning_seconds_sum${labels}`)).toBeGreaterThan(0);
      expect(m(`flotilla_session_provisioning_seconds_sum${labels}`)).toBeLessThan(upFor);
      expect(m(`flotilla_session_provisioning_failures_total${labels}`)).toBe(0);
    }

    // Store lag: one per harness event that added to the log, so at least one and never more
    // than the log holds events.
    const { rows: stored } = await db.query("select count(*)::int as n from events");
    const storedLags = m("flotilla_event_store_lag_seconds_count")!;
    expect(storedLags).toBeGreaterThan(0);
    expect(storedLags).toBeLessThanOrEqual(stored[0].n);
    expect(m("flotilla_event_store_lag_seconds_sum")).toBeGreaterThan(0);

    // Delivery lag, replay: a stream of the task's whole (finished) session counts nothing.
    const session = await t.client.sessions.get(done.sessionId!);
    const delivered = m("flotilla_event_delivery_lag_seconds_count")!;
    const replay = await openStream(session.id, 0);
    await replay.until((e) => e.seq === session.lastSeq);
    replay.close();
    expect(replay.events.length).toBe(session.lastSeq);
    m = await scrape();
    expect(m("flotilla_event_delivery_lag_seconds_count")).toBe(delivered);

    // Delivery lag, live: every event of a new turn written to a stream that was already live.
    const live = await openStream(session.id, session.lastSeq);
    await live.live();
    await t.client.sessions.send(session.id, { text: "two more" });
    await live.until((e) => e.type === "turn.finished");
    live.close();
    expect(live.events.length).toBeGreaterThan(1);
    m = await scrape();
    expect(m("flotilla_event_delivery_lag_seconds_count")! - delivered).toBeGreaterThanOrEqual(
      live.events.length,
    );
    expect(m("flotilla_event_delivery_lag_seconds_sum")).toBeGreaterThan(0);
    // Its harness events were stored meanwhile, each observed.
    expect(m("flotilla_event_store_lag_seconds_count")).toBeGreaterThan(storedLags);
  });
});
