import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FlotillaClient, type SessionEvent } from "@flotilla/client";
import { type Scenario, type ScriptedModelServer, startScriptedModel } from "@flotilla/scripted-model";
import { freePort } from "@flotilla/server";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import {
  collectUntil,
  createTestDb,
  deadline,
  MODEL,
  makeRepo,
  spawnFlotilla,
  tempDir,
  untilTurnFinished,
  waitFor,
} from "../../../test/support.ts";
import { stripAnsi, TermSocket } from "../../../test/terminal-support.ts";
import { leaks, type ProbeTargets, probeScript, wrap } from "./escape-probe.ts";

/**
 * The attack the isolation work answers: a hostile prompt's bash, a member's terminal and a task's
 * verify each run a base64-wrapped probe for the admin token, the control plane's environment,
 * another project's workspace, /etc/shadow, other processes, Postgres and loopback ports. Under
 * `sandbox` it finds nothing from any of the three; under `local` the same probe finds them, so the
 * boundary is shown, not assumed. Each runtime gets a real control plane as its own process (so
 * its /proc/<pid>/environ holds a canary, as a real deployment's holds its secrets).
 */

interface Plane {
  child: ChildProcess;
  client: FlotillaClient;
  url: string;
  token: string;
  home: string;
  db: string;
  port: number;
  model: ScriptedModelServer;
  scenario: Scenario;
  canary: string;
}

const planes: Plane[] = [];

async function startPlane(runtime: "sandbox" | "local"): Promise<Plane> {
  const scenario: Scenario = { rules: [], default: [{ text: "ok" }] };
  const model = await startScriptedModel({ scenario });
  const home = tempDir(`escape-${runtime}`);
  const db = await createTestDb();
  const port = await freePort();
  const canary = `canary${randomBytes(8).toString("hex")}`;
  writeFileSync(
    join(home, "config.yaml"),
    [
      `defaultModel: ${MODEL}`,
      "permission: allow",
      'demo: "off"',
      `runtime: ${runtime}`,
      "pool: { warm: 0, warmWorkspaces: 0 }",
      "providers:",
      "  scripted:",
      `    baseURL: ${model.url}`,
      "    models:",
      "      scripted-1: { name: Scripted }",
    ].join("\n"),
  );
  const logFile = join(home, "server.log");
  // The control plane's environment holds what a real one's does: the database URL and a secret.
  const child = spawnFlotilla(
    ["server", "--port", String(port)],
    { FLOTILLA_HOME: home, DATABASE_URL: db, FLOTILLA_CANARY: canary },
    logFile,
  );
  const plane = { child, home, db, port, model, scenario, canary } as Plane;
  planes.push(plane);
  await waitFor(
    async () => {
      if (child.exitCode !== null)
        throw new Error(`server exited: ${readFileSync(logFile, "utf8").slice(-2000)}`);
      const res = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1000) });
      return res.ok;
    },
    90_000,
    "control plane ready",
  );
  plane.token = readFileSync(join(home, "admin.token"), "utf8").trim();
  plane.url = `http://127.0.0.1:${port}`;
  plane.client = new FlotillaClient({ baseUrl: plane.url, token: plane.token });
  return plane;
}

afterAll(async () => {
  for (const p of planes) {
    if (p.child.exitCode === null) {
      const gone = new Promise((r) => p.child.once("exit", r));
      p.child.kill("SIGTERM");
      await gone;
    }
    // Whatever a failed test left behind: harnesses and the model gateway are their own process groups.
    const c = new pg.Client({ connectionString: p.db });
    await c.connect();
    for (const r of (
      await c.query("select pid from harnesses where pid is not null union select pid from gateways")
    ).rows) {
      if (r.pid > 1)
        try {
          process.kill(-r.pid, "SIGKILL");
        } catch {}
    }
    await c.end();
    await p.model.close();
  }
});

/** A victim in another project, with a secret in its workspace; then the probe's targets. */
async function setUp(p: Plane): Promise<{ targets: ProbeTargets; secret: string }> {
  const secret = `victim${randomBytes(8).toString("hex")}`;
  const victim = await p.client.sessions.create({
    repo: makeRepo({ "secret.txt": `${secret}\n` }),
    prompt: "hello",
  });
  // Its own project, so its own harness boots first: up to its ready timeout (120 s) when loaded.
  await collectUntil(p.client, victim.id, untilTurnFinished(), { timeoutMs: 180_000 });
  const pgPort = Number(new URL(p.db).port);
  return {
    secret,
    targets: {
      home: p.home,
      adminToken: p.token,
      canary: p.canary,
      otherWorkspaceFile: join(victim.workspacePath, "secret.txt"),
      serverPid: p.child.pid!,
      forbiddenPorts: [p.port, pgPort],
    },
  };
}

/** The agent's bash tool runs the wrapped probe in a session on `repo`; returns what the tool printed. */
async function probeAsAgent(p: Plane, script: string, repo: string): Promise<string> {
  p.scenario.rules.unshift({
    match: "^probe the machine",
    steps: [{ tool: "bash", args: { command: wrap(script), description: "look around" } }, { text: "done" }],
  });
  p.model.setScenario(p.scenario);
  const s = await p.client.sessions.create({ repo, prompt: "probe the machine" });
  // The attacker's project is not the victim's: the first session on it boots its harness, which
  // may take up to its ready timeout (120 s) on a loaded machine.
  const events = await collectUntil(p.client, s.id, untilTurnFinished(), { timeoutMs: 180_000 });
  const tool = events.findLast(
    (e): e is Extract<SessionEvent, { type: "tool.updated" }> =>
      e.type === "tool.updated" && e.data.tool === "bash" && e.data.status === "completed",
  );
  return tool?.data.output ?? "";
}

function expectNothingFound(output: string, secrets: string[]) {
  const r = leaks(output);
  expect(r.done, output).toBe(true);
  expect(r.leaks, output).toEqual([]);
  expect(r.safe.length).toBeGreaterThanOrEqual(12);
  for (const s of secrets) expect(output).not.toContain(s);
  expect(output).not.toMatch(/PROBE DONE uid=0\b/);
}

describe("escape probe", () => {
  it("finds nothing under sandbox: from the agent's bash, a terminal shell, or a verify command", {
    timeout: deadline(720_000),
  }, async () => {
    const p = await startPlane("sandbox");
    const { targets, secret } = await setUp(p);
    const script = probeScript(targets);
    const secrets = [p.token, p.canary, secret];
    // One attacker project (one shard, one harness) for all three probes; the victim stays in
    // another. Each probe is still a sandbox of its own on that shard: the agent's bash runs in the
    // harness's, the terminal and the verify command each in a fresh one the driver starts for them
    // (attach, exec), not inside the harness. None needs a fresh harness, and the probe reads only:
    // what one leaves on the shard is nothing another looks for. A repository per probe meant
    // four harness boots where two do.
    const attacker = makeRepo();

    // 1. The agent's own bash tool.
    expectNothingFound(await probeAsAgent(p, script, attacker), secrets);

    // 2. A member's terminal shell in a session's workspace.
    const member = (await p.client.tokens.create("mallory", "member")).token;
    const s = await p.client.sessions.create({ repo: attacker, prompt: "hello" });
    await collectUntil(p.client, s.id, untilTurnFinished(), { timeoutMs: 90_000 });
    const memberClient = new FlotillaClient({ baseUrl: p.url, token: member });
    const term = new TermSocket(memberClient.terminalUrl(s.id), member);
    await term.opened;
    await term.waitFor((f) => f.type === "lease");
    term.send({ type: "input", data: `${wrap(script)}\r` });
    await waitFor(async () => stripAnsi(term.text()).includes("PROBE DONE"), 60_000, "probe in the terminal");
    expectNothingFound(stripAnsi(term.text()).replace(/\r/g, ""), secrets);
    await term.close();

    // 3. A member task's verify command.
    const { task } = await memberClient.tasks.submit({
      repo: attacker,
      prompt: "hello",
      verify: wrap(script),
    });
    const done = await waitFor(
      async () => {
        const x = await memberClient.tasks.get(task.id);
        return x.result?.verify ? x : undefined;
      },
      120_000,
      "verify result",
    );
    expectNothingFound(done.result!.verify!.output, secrets);
  });

  it("finds everything under local: the boundary above is real, not assumed", {
    timeout: deadline(480_000),
  }, async () => {
    const p = await startPlane("local");
    const { targets, secret } = await setUp(p);
    // The same two projects as under sandbox (victim and attacker, two harnesses), so the probe
    // that found nothing there is shown to find the other project's workspace here.
    const output = await probeAsAgent(p, probeScript(targets), makeRepo());
    const r = leaks(output);
    expect(r.done, output).toBe(true);
    const names = r.leaks.map((l) => l.split(":")[0]!.slice(5));
    for (const n of ["admin-token", "server-environ", "other-workspace", "flotilla-home", `tcp-${p.port}`])
      expect(names, output).toContain(n);
    expect(output).toContain(p.token);
    expect(output).toContain(p.canary);
    expect(output).toContain(secret);
    // GET /harnesses says loudly what this runtime is.
    const hs = await p.client.harnesses();
    expect(hs.find((h) => h.driver === "local")?.warning).toMatch(/not sandboxed/);
  });
});
