import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
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
 * project returns exactly what the gateway recorded for each.
 */

let t: TestServer;
let db: pg.Client;
let prometheus: ChildProcess | undefined;

beforeAll(async () => {
  t = await startTestServer({
    scenario: {
      rules: [{ match: "^two", steps: [{ text: "one two three four" }] }],
      default: [{ text: "ok" }],
    },
  });
  db = new pg.Client({ connectionString: t.db });
  await db.connect();
}, 120_000);

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
  });
});
