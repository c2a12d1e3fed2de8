import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { SessionEvent } from "@flotilla/client";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  collectUntil,
  MODEL,
  makeRepo,
  startTestServer,
  type TestServer,
  untilTurnFinished,
  waitFor,
} from "../../../test/support.ts";
import { runCli } from "../../cli/test/cli.ts";
import { newGatewayToken } from "../src/gateway/gateway.ts";
import { wrap } from "./escape-probe.ts";

/**
 * The model gateway (issue "Model gateway, secrets, budgets and metrics", must-show 1): a canary
 * provider key drives a real session through the gateway on the sandbox runtime, and afterwards is
 * found nowhere but where the provider received it: not in the session's events, the API's answers,
 * the log, any process's environment or command line on this machine, any file under the control
 * plane's home (harness state and workspaces included), or any row of the database. The agent,
 * looking for it, finds only its harness's gateway token, which works for the sessions that harness
 * serves and for nothing once the session is deleted or the harness stops.
 */

const CANARY = `sk-canary-${randomBytes(12).toString("hex")}`;
const PRICE = { input: 3, output: 15 };

// What a curious agent does (base64-wrapped, as the escape probe is, so OpenCode's path rules do
// not stop it before it runs): its environment, every process's it can see, its files. It searches
// for the canary's prefix, never the canary itself (which would put the value in the transcript).
const PROBE = [
  "echo ENV-START; env; echo ENV-END",
  "echo PROC; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c sk-canary- || true",
  'echo FILES; grep -rl sk-canary- "$HOME" /tmp "$PWD" 2>/dev/null | head -5 || true',
  "echo PROBE-DONE",
].join("\n");

let t: TestServer;
let db: pg.Client;

beforeAll(async () => {
  t = await startTestServer({
    scenario: {
      rules: [
        {
          match: "^spend",
          steps: [1, 2, 3, 4, 5]
            .map((n) => ({
              tool: "bash",
              args: { command: `echo step ${n}`, description: `step ${n}` },
            }))
            .concat([{ text: "all steps done" } as never]),
        },
        {
          match: "^read the notes",
          steps: [
            { tool: "bash", args: { command: "cat notes.txt", description: "read" } },
            { text: "read" },
          ],
        },
        {
          match: "^look for keys",
          steps: [
            { tool: "bash", args: { command: wrap(PROBE), description: "look for keys" } },
            { text: "done" },
          ],
        },
      ],
      default: [{ text: "ok" }],
    },
    config: { runtime: "sandbox", providerEnv: { SCRIPTED_KEY: CANARY } },
  });
  // The scripted provider now needs the canary as its key, and has a price. Upstreams are read
  // when the gateway starts: restart so both take effect.
  const scripted = t.server.services.config.providers.scripted!;
  scripted.apiKeyEnv = "SCRIPTED_KEY";
  scripted.models["scripted-1"] = { ...scripted.models["scripted-1"]!, cost: PRICE };
  await t.restart();
  db = new pg.Client({ connectionString: t.db });
  await db.connect();
}, 120_000);

afterAll(async () => {
  await db?.end();
  await t?.close();
});

/** Every file under `dir` whose bytes hold `needle` (sockets and the like skipped). */
function filesHolding(dir: string, needle: string): string[] {
  const found: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      let st: ReturnType<typeof statSync>;
      try {
        st = statSync(p);
      } catch {
        continue;
      }
      if (st.isDirectory()) walk(p);
      else if (st.isFile() && readFileSync(p).includes(needle)) found.push(p);
    }
  };
  walk(dir);
  return found;
}

/** Which processes on this machine hold `needle` in their environment or command line. */
function processesHolding(needle: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    for (const f of ["environ", "cmdline"]) {
      try {
        if (readFileSync(`/proc/${pid}/${f}`).includes(needle)) found.push(`${pid}/${f}`);
      } catch {
        // Gone, or a kernel thread.
      }
    }
  }
  return found;
}

async function callGateway(token: string, opencodeSession: string): Promise<Response> {
  return fetch(`${t.server.services.config.gateway.url}/gateway/scripted/chat/completions`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      "x-session-affinity": opencodeSession,
    },
    body: JSON.stringify({ model: "scripted-1", messages: [{ role: "user", content: "hi" }] }),
  });
}

describe("model gateway", () => {
  it("a canary provider key drives a sandboxed session through the gateway and is found nowhere else; the agent holds only a gateway token that dies with its session and harness", {
    timeout: 300_000,
  }, async () => {
    const repo = makeRepo();
    const s = await t.client.sessions.create({ repo, prompt: "look for keys", model: MODEL });
    const events = await collectUntil(t.client, s.id, untilTurnFinished(), { timeoutMs: 180_000 });
    const fin = events.find((e) => e.type === "turn.finished");
    expect(fin?.type === "turn.finished" && fin.data.outcome).toBe("success");

    // The key reached the provider, put there by the gateway.
    const agentCalls = t.model.requests.filter((r) => r.kind === "agent");
    expect(agentCalls.length).toBeGreaterThanOrEqual(2);
    for (const r of agentCalls) expect(r.apiKey).toBe(CANARY);

    // What the agent saw: its harness's gateway token, and no key.
    const tool = events.findLast(
      (e): e is Extract<SessionEvent, { type: "tool.updated" }> =>
        e.type === "tool.updated" && e.data.tool === "bash" && e.data.status === "completed",
    );
    const output = tool?.data.output ?? "";
    expect(output).toContain("PROBE-DONE");
    expect(output).not.toContain(CANARY);
    expect(output).toMatch(/^PROC\n0$/m);
    expect(output).toMatch(/^FILES\nPROBE-DONE/m);
    const gatewayToken = output.match(/fgw_[A-Za-z0-9_-]+/)?.[0];
    expect(gatewayToken, output).toBeDefined();

    // Nowhere else: the events, the API's answers, the log, processes, files, the database.
    const api = JSON.stringify([
      await t.client.sessions.get(s.id),
      await t.client.sessions.list(),
      await t.client.harnesses(),
      await t.client.models(),
      await (await fetch(`${t.url}/overview`, { headers: { authorization: `Bearer ${t.token}` } })).text(),
    ]);
    expect(JSON.stringify(events)).not.toContain(CANARY);
    expect(api).not.toContain(CANARY);
    expect(readFileSync(t.logFile, "utf8")).not.toContain(CANARY);
    expect(processesHolding(CANARY)).toEqual([]);
    expect(filesHolding(t.home, CANARY)).toEqual([]);
    // Neither `ps` nor any command line shows the harness's token or its password.
    const ps = execFileSync("ps", ["-eo", "args"], { encoding: "utf8" });
    expect(ps).not.toContain(gatewayToken);
    const { rows: hs } = await db.query(
      "select run_dir from harnesses where state = 'ready' and gateway_token_hash is not null",
    );
    expect(hs.length).toBe(1);
    expect(ps).not.toContain(readFileSync(join(hs[0].run_dir, "password"), "utf8"));
    const { rows: tables } = await db.query(
      "select tablename from pg_tables where schemaname = 'public' order by tablename",
    );
    for (const { tablename } of tables) {
      const { rows } = await db.query(
        `select count(*)::int as n from "${tablename}" x where x::text like $1`,
        [`%${CANARY}%`],
      );
      expect(rows[0].n, `table ${tablename}`).toBe(0);
    }

    // Every call is on record, for this session, counted and priced.
    // (Recorded as each answer ends, which can trail the turn's end by a moment.)
    const calls = await waitFor(
      async () => {
        const { rows } = await db.query(
          "select * from gateway_calls where session_id = $1 order by started_at",
          [s.id],
        );
        return rows.length >= agentCalls.length && rows;
      },
      10_000,
      "the session's gateway calls on record",
    );
    expect(calls.length).toBe(agentCalls.length);
    for (const c of calls) {
      expect(c).toMatchObject({ provider: "scripted", model: "scripted-1", status: 200, stream: true });
      expect(Number(c.input_tokens)).toBeGreaterThan(0);
      expect(Number(c.output_tokens)).toBeGreaterThan(0);
      expect(c.cost_usd).toBeCloseTo(
        (Number(c.input_tokens) * PRICE.input + Number(c.output_tokens) * PRICE.output) / 1e6,
        12,
      );
      expect(c.first_byte_ms).not.toBeNull();
    }

    // The token is good only for the sessions its harness serves...
    const { rows: ids } = await db.query("select opencode_id from sessions where id = $1", [s.id]);
    const own = ids[0].opencode_id as string;
    expect((await callGateway(gatewayToken!, own)).status).toBe(200);
    const stranger = await callGateway(gatewayToken!, "ses_not_one_of_ours");
    expect(stranger.status).toBe(401);
    expect(JSON.stringify(await stranger.json())).toMatch(/names no session this harness serves/);
    expect((await callGateway("fgw_forged", own)).status).toBe(401);
    // ...while the session lives: deleted, it is refused.
    const other = await t.client.sessions.create({ repo, prompt: "hello", model: MODEL });
    await collectUntil(t.client, other.id, untilTurnFinished(), { timeoutMs: 120_000 });
    await t.client.sessions.delete(s.id);
    expect((await callGateway(gatewayToken!, own)).status).toBe(401);
    // The other session (same repository, same harness) still works, until the harness stops.
    const { rows: otherIds } = await db.query("select opencode_id from sessions where id = $1", [other.id]);
    expect((await callGateway(gatewayToken!, otherIds[0].opencode_id)).status).toBe(200);
    await t.server.services.harnesses.stopAll("test: the harness stops");
    expect((await callGateway(gatewayToken!, otherIds[0].opencode_id)).status).toBe(401);
    // (A manager that stopped all its harnesses starts no more: a fresh control plane for the rest.)
    await t.restart();
  });

  it("a task's $0.01 budget: the gateway refuses the call that would pass it, the task fails BudgetExceeded naming the budget, nothing is charged past it", {
    timeout: 300_000,
  }, async () => {
    // Priced so that $0.01 buys about two and a half of this task's calls: what one call's input
    // costs is measured off the calls recorded so far (each counts the request's bytes / 4).
    const { rows: sized } = await db.query(
      // (Agent calls only: the direct calls above sent a few bytes.)
      "select min(input_tokens)::float8 as input from gateway_calls where status = 200 and input_tokens > 500",
    );
    const perToken = 0.01 / (2.5 * sized[0].input);
    const scripted = t.server.services.config.providers.scripted!;
    scripted.models["scripted-1"] = {
      ...scripted.models["scripted-1"]!,
      cost: { input: perToken * 1e6, output: perToken * 1e6 },
    };
    await t.restart();

    const { task } = await t.client.tasks.submit({
      repo: makeRepo(),
      prompt: "spend a little",
      maxCostUsd: 0.01,
    });
    expect(task.maxCostUsd).toBe(0.01);
    const done = await waitFor(
      async () => {
        const x = await t.client.tasks.get(task.id);
        return ["failed", "succeeded", "canceled"].includes(x.state) && x;
      },
      240_000,
      "the task's end",
    );
    expect(done.state).toBe("failed");
    expect(done.error?.name).toBe("BudgetExceeded");
    expect(done.error?.retriable).toBe(false);
    expect(done.error?.message).toMatch(/maxCostUsd \$0\.01 reached/);
    expect(done.attempts).toBe(1);
    // The turn's own end says the same, in the session's events.
    const events = await collectUntil(t.client, done.sessionId!, (e) => e.type === "turn.finished");
    const fin = events.find((e) => e.type === "turn.finished");
    expect(fin?.type === "turn.finished" && fin.data.error?.name).toBe("BudgetExceeded");

    const { rows: calls } = await db.query(
      "select status, cost_usd, error from gateway_calls where task_id = $1 order by started_at",
      [task.id],
    );
    const charged = calls.filter((c) => c.status === 200);
    const refused = calls.filter((c) => c.status === 402);
    expect(charged.length).toBeGreaterThanOrEqual(1);
    expect(refused.length).toBe(1);
    expect(refused[0].error).toMatch(/^budget_exceeded: task budget maxCostUsd/);
    expect(calls.at(-1).status).toBe(402);
    const total = charged.reduce((sum, c) => sum + c.cost_usd, 0);
    expect(total).toBeGreaterThan(0.005);
    expect(total).toBeLessThanOrEqual(0.01);
    // No call reached the provider after the refusal: the scenario stopped where the gateway did.
    const stepsRun = t.model.requests.filter(
      (r) => r.rule !== undefined && r.messages.some((m) => JSON.stringify(m).includes("spend a little")),
    );
    expect(stepsRun.length).toBe(charged.length);
  });

  it("warn mode: a task past its budget goes on; one budget.warning event names the budget, and the webhook says so; a daily limit in warn mode too", {
    timeout: 300_000,
  }, async () => {
    // (Priced by the test before: $0.01 buys about two and a half of this task's calls.)
    const received: { path: string; body: { event: string; data: Record<string, unknown> } }[] = [];
    const receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        received.push({ path: req.url ?? "", body: JSON.parse(Buffer.concat(chunks).toString("utf8")) });
        res.writeHead(200).end("ok");
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    try {
      const sub = await t.client.webhooks.create({ url: `${base}/sub`, events: ["budget.warning"] });
      expect(sub.events).toEqual(["budget.warning"]);

      // Submitted from the CLI: --budget-mode warn, shown back by `task show`.
      const conn = ["--server", t.url, "--token", t.token];
      const submitted = await runCli([
        "task",
        "submit",
        "spend a little",
        "--repo",
        makeRepo(),
        "--max-cost",
        "0.01",
        "--budget-mode",
        "warn",
        "--webhook",
        `${base}/task`,
        "--json",
        ...conn,
      ]);
      expect(submitted.code, submitted.stderr).toBe(0);
      const taskId = JSON.parse(submitted.stdout).task.id as string;
      const done = await waitFor(
        async () => {
          const x = await t.client.tasks.get(taskId);
          return ["failed", "succeeded", "canceled", "dead"].includes(x.state) && x;
        },
        240_000,
        "the task's end",
      );
      expect(done.state, JSON.stringify(done.error)).toBe("succeeded");
      expect(done.budgetMode).toBe("warn");
      const shown = await runCli(["task", "show", taskId, ...conn]);
      expect(shown.stdout).toMatch(/budget +\$0\.01 \(warn\)/);

      // Every step ran, past the budget, and one warning said so, before the call that crossed it.
      const { rows: calls } = await db.query(
        "select status, cost_usd, budget_warnings from gateway_calls where task_id = $1 order by started_at",
        [taskId],
      );
      expect(calls.every((c) => c.status === 200)).toBe(true);
      const total = calls.reduce((sum, c) => sum + c.cost_usd, 0);
      expect(total).toBeGreaterThan(0.01);
      const warned = calls.filter((c) => c.budget_warnings);
      expect(warned.map((c) => c.budget_warnings)).toEqual([["maxCostUsd"]]);
      const spentBefore = calls.slice(0, calls.indexOf(warned[0])).reduce((sum, c) => sum + c.cost_usd, 0);
      const events = await collectUntil(t.client, done.sessionId!, untilTurnFinished());
      const warnings = events.filter((e) => e.type === "budget.warning");
      expect(warnings.length).toBe(1);
      expect(warnings[0]!.type === "budget.warning" && warnings[0]!.data).toMatchObject({
        budget: "maxCostUsd",
        limit: 0.01,
        unit: "usd",
        taskId,
      });
      const data = warnings[0]!.type === "budget.warning" ? warnings[0]!.data : undefined;
      expect(data?.spent).toBeCloseTo(spentBefore, 9);
      expect(data?.message).toMatch(/task budget maxCostUsd \$0\.01 reached/);

      // The webhook: to the subscription and to the task's own URL, the same warning.
      const hooks = await waitFor(
        async () => {
          const w = received.filter((r) => r.body.event === "budget.warning");
          return w.length >= 2 && w;
        },
        60_000,
        "the budget.warning deliveries",
      );
      expect(hooks.map((h) => h.path).sort()).toEqual(["/sub", "/task"]);
      for (const h of hooks)
        expect(h.body.data).toMatchObject({
          budget: "maxCostUsd",
          taskId,
          sessionId: done.sessionId,
          seq: warnings[0]!.seq,
        });

      // A daily limit in warn mode: the turn goes through and says which limit, once.
      t.server.services.config.gateway.limits = { projectDailyUsd: 1e-9, dailyMode: "warn" };
      await t.restart();
      const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "spend a little", model: MODEL });
      const daily = await collectUntil(t.client, s.id, untilTurnFinished(), { timeoutMs: 180_000 });
      const fin = daily.find((e) => e.type === "turn.finished");
      expect(fin?.type === "turn.finished" && fin.data.outcome).toBe("success");
      const dailyWarnings = daily.filter((e) => e.type === "budget.warning");
      expect(dailyWarnings.map((e) => e.type === "budget.warning" && e.data.budget)).toEqual([
        "projectDailyUsd",
      ]);
      await t.client.webhooks.delete(sub.id);
    } finally {
      t.server.services.config.gateway.limits = {};
      await t.restart();
      await new Promise<void>((r) => receiver.close(() => r()));
    }
  });

  it("GET /usage and `flotilla usage` group the gateway's calls (JSON, CSV, a table); a bad grouping is a 400 naming the field", {
    timeout: 120_000,
  }, async () => {
    const { rows } = await db.query(
      `select g.project_id, g.provider || '/' || g.model as model, count(*) filter (where status <> 402)::int as calls,
              count(*) filter (where status = 402)::int as refused, sum(output_tokens)::float8 as output,
              sum(cost_usd)::float8 as cost
         from gateway_calls g group by 1, 2 order by 1, 2`,
    );
    expect(rows.length).toBeGreaterThanOrEqual(2);
    const report = await t.client.usage({ by: "project,model" });
    expect(report.by).toEqual(["project", "model"]);
    expect(report.items.map((r) => [r.project, r.model, r.calls, r.refused, r.outputTokens])).toEqual(
      rows.map((r) => [r.project_id, r.model, r.calls, r.refused, r.output]),
    );
    expect(report.total.costUsd).toBeCloseTo(
      rows.reduce((sum, r) => sum + r.cost, 0),
      12,
    );
    // A window that ends before any call: nothing.
    expect((await t.client.usage({ until: "2020-01-01T00:00:00Z" })).items).toEqual([]);

    const csv = (await t.client.usageCsv({ by: "project" })).trim().split("\n");
    expect(csv[0]).toBe("project,calls,refused,inputTokens,outputTokens,cachedTokens,costUsd");
    expect(csv.length).toBe(1 + new Set(rows.map((r) => r.project_id)).size);

    const bad = await fetch(`${t.url}/usage?by=project,colour`, {
      headers: { authorization: `Bearer ${t.token}` },
    });
    expect(bad.status).toBe(400);
    const body = await bad.json();
    expect(body.error.code).toBe("invalid_request");
    expect(body.error.field).toBe("by");

    const conn = ["--server", t.url, "--token", t.token];
    const table = await runCli(["usage", "--by", "model", "--since", "1d", ...conn]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^MODEL +CALLS +REFUSED +INPUT +OUTPUT +CACHED +COST/m);
    expect(table.stdout).toMatch(/^scripted\/scripted-1 +\d+ +1 /m);
    expect(table.stdout).toMatch(/^total /m);
    const cliCsv = await runCli(["usage", "--csv", ...conn]);
    expect(cliCsv.stdout.split("\n")[0]).toBe(
      "project,calls,refused,inputTokens,outputTokens,cachedTokens,costUsd",
    );
    const wrong = await runCli(["usage", "--by", "colour", ...conn]);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/--by.*expected a comma list of project, model, day, session, task, token/);
  });

  it("limits: past a project's requests per minute the gateway answers 429 with Retry-After; past its or its API token's daily spend it refuses, naming projectDailyUsd or tokenDailyUsd", {
    timeout: 300_000,
  }, async () => {
    const config = t.server.services.config;
    config.gateway.limits = { projectRpm: 2 };
    await t.restart();
    const repo = makeRepo();
    const s = await t.client.sessions.create({ repo, prompt: "hello", model: MODEL });
    await collectUntil(t.client, s.id, untilTurnFinished(), { timeoutMs: 180_000 });
    // The turn made one call; call as its harness does (with a token of this test's, set on it).
    const { rows } = await db.query(
      `select s.opencode_id, h.id as harness from sessions s join workspaces w on w.id = s.workspace_id
         join harnesses h on h.shard_id = w.shard_id and h.state = 'ready' where s.id = $1`,
      [s.id],
    );
    const token = newGatewayToken();
    await db.query("update harnesses set gateway_token_hash = $2 where id = $1", [
      rows[0].harness,
      token.hash,
    ]);
    expect((await callGateway(token.token, rows[0].opencode_id)).status).toBe(200);
    const limited = await callGateway(token.token, rows[0].opencode_id);
    expect(limited.status).toBe(429);
    const retryAfter = Number(limited.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect((await limited.json()).error).toMatchObject({
      code: "rate_limited",
      message: "rate limit projectRpm 2/min reached",
    });
    const { rows: recorded } = await db.query(
      "select status, error from gateway_calls where session_id = $1 order by started_at",
      [s.id],
    );
    expect(recorded.map((r) => r.status)).toEqual([200, 200, 429]);

    // Its spend today is more than this: the next turn's first call is refused.
    config.gateway.limits = { projectDailyUsd: 1e-9 };
    await t.restart();
    await t.client.sessions.send(s.id, { text: "hello again" });
    const events = await collectUntil(t.client, s.id, untilTurnFinished(2), { timeoutMs: 180_000 });
    const fin = events.filter((e) => e.type === "turn.finished").at(-1);
    expect(fin?.type === "turn.finished" && fin.data.error?.name).toBe("BudgetExceeded");
    expect(fin?.type === "turn.finished" && fin.data.error?.message).toMatch(
      /project budget projectDailyUsd \$1e-9 reached for today/,
    );

    // Per API token (the one that submitted the task): one task spends today, then the next one's
    // first call is refused.
    config.gateway.limits = {};
    await t.restart();
    const settled = async (id: string) =>
      waitFor(
        async () => {
          const x = await t.client.tasks.get(id);
          return ["failed", "succeeded", "canceled", "dead"].includes(x.state) && x;
        },
        180_000,
        "the task's end",
      );
    const first = await t.client.tasks.submit({ repo, prompt: "hello" });
    expect((await settled(first.task.id)).state).toBe("succeeded");
    config.gateway.limits = { tokenDailyUsd: 1e-9 };
    await t.restart();
    const second = await t.client.tasks.submit({ repo, prompt: "hello" });
    const refused = await settled(second.task.id);
    expect(refused.error?.name).toBe("BudgetExceeded");
    expect(refused.error?.message).toMatch(/token budget tokenDailyUsd \$1e-9 reached for today/);
    // The usage by token shows the admin token's calls and the refusal.
    const admin = (await t.client.tokens.list()).find((x) => x.role === "admin")!;
    const byToken = await t.client.usage({ by: "token" });
    const mine = byToken.items.find((r) => r.token === admin.id);
    expect(mine?.calls).toBeGreaterThanOrEqual(1);
    expect(mine?.refused).toBeGreaterThanOrEqual(1);
    config.gateway.limits = {};
    await t.restart();
  });

  it("a gateway that dies is started again at the same address; a running harness's next turn goes through it", {
    timeout: 300_000,
  }, async () => {
    const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "hello", model: MODEL });
    await collectUntil(t.client, s.id, untilTurnFinished(), { timeoutMs: 180_000 });
    const { rows: before } = await db.query("select pid, url from gateways");
    expect(before).toHaveLength(1);
    process.kill(-before[0].pid, "SIGKILL");
    const after = await waitFor(
      async () => {
        const { rows } = await db.query("select pid, url from gateways");
        return rows[0] && rows[0].pid !== before[0].pid && rows[0];
      },
      60_000,
      "the gateway started again",
    );
    expect(after.url).toBe(before[0].url);
    await t.client.sessions.send(s.id, { text: "hello again" });
    const events = await collectUntil(t.client, s.id, untilTurnFinished(2), { timeoutMs: 120_000 });
    const fin = events.filter((e) => e.type === "turn.finished").at(-1);
    expect(fin?.type === "turn.finished" && fin.data.outcome).toBe("success");
    const { rows: calls } = await db.query("select status from gateway_calls where session_id = $1", [s.id]);
    expect(calls.map((c) => c.status)).toEqual([200, 200]);
  });

  it("a provider key an agent finds in a repository is redacted from the session's events and the log", {
    timeout: 300_000,
  }, async () => {
    const s = await t.client.sessions.create({
      repo: makeRepo({ "notes.txt": `the key is ${CANARY} (do not share)\n` }),
      prompt: "read the notes",
      model: MODEL,
    });
    const events = await collectUntil(t.client, s.id, untilTurnFinished(), { timeoutMs: 180_000 });
    const tool = events.findLast(
      (e): e is Extract<SessionEvent, { type: "tool.updated" }> =>
        e.type === "tool.updated" && e.data.tool === "bash" && e.data.status === "completed",
    );
    expect(tool?.data.output).toContain("the key is [redacted] (do not share)");
    // Stored that way (what a later reader or a resumed stream gets), and never logged.
    const stored = await collectUntil(t.client, s.id, untilTurnFinished());
    expect(JSON.stringify(stored)).not.toContain(CANARY);
    expect(JSON.stringify(events)).not.toContain(CANARY);
    expect(readFileSync(t.logFile, "utf8")).not.toContain(CANARY);
  });
});
