/**
 * `npm run bench`: one run against real components (embedded Postgres, `opencode serve` harnesses
 * started by Flotilla, the scripted model), control planes in this process, one per phase.
 * Phases 1–6 run the default runtime (sandbox: bubblewrap; the control planes are given no
 * FLOTILLA_RUNTIME); phase 7 runs both runtimes side by side:
 *   1. COLD session provisioning: POST /sessions → harness.state ready over SSE, one at a time.
 *   2. Latency Flotilla adds to streamed text deltas: harness SSE vs Flotilla SSE, same clock.
 *   3. Claim throughput: claimBatch against a deep queue, 1, 2 and 4 claimers (database only).
 *   4. Enqueue → agent running: POST /tasks → first text.delta, warm pool vs cold start.
 *   5. Sessions per GB of harness RSS: one project's sessions sharing a harness vs one each.
 *   6. UI first load of a session page in Chromium: JavaScript transferred, time to first event rendered.
 *   7. Runtime: sandbox vs local, each measure with one control plane per runtime and the samples
 *      alternated: cold provisioning (1's measure), enqueue → first delta on a warm harness (4's
 *      warm half), delta latency (2's, plus model chunk → client through a tap in front of the
 *      model, which is what the sandbox's socat bridges can add to); p50/p95 of each and
 *      sandbox / local.
 * Env: BENCH_SESSIONS (10), BENCH_TURNS (5), BENCH_TASKS (8), BENCH_CONCURRENT (8),
 * BENCH_QUEUED (10000), BENCH_CLAIM_S (8, per claimer count), BENCH_UI_LOADS (5),
 * BENCH_RUNTIME_SESSIONS (5 cold provisions per runtime), BENCH_RUNTIME_TASKS (3 warm tasks per
 * runtime), BENCH_RUNTIME_TURNS (3 streamed turns per runtime), BENCH_TIMEOUT_S (1200),
 * BENCH_ONLY=ui runs phase 6 alone, BENCH_ONLY=runtime runs phase 7 alone (~4 min on 2 cores),
 * BENCH_ONLY=claims runs phase 3 alone (database only, ~1 min), BENCH_ONLY=latency phase 2 alone,
 * BENCH_ONLY=hot phase 4h alone (tasks on a hot repository, taking warm workspaces),
 * BENCH_ONLY=gateway phase 8 alone (the model gateway's cost per call and per chunk; BENCH_GATEWAY_CALLS, 20),
 * BENCH_KEEP=1 keeps temp dirs. Report on stdout, ending with one `BENCH_RESULT {json}` line;
 * progress on stderr.
 */
import { loadavg } from "node:os";
import { resolve } from "node:path";
import { type Scenario, startScriptedModel } from "@flotilla/scripted-model";
import { createLogger, loadConfig, startEmbeddedPostgres } from "@flotilla/server";
import { LIVE, type Phase, Phases, poll } from "./boot.ts";
import { runClaims } from "./claim.ts";
import { type DensityResult, HANG_PROMPT, runDensity } from "./density.ts";
import { type GatewayResult, reportGateway, runGateway } from "./gateway.ts";
import { runLatency, STREAM_PROMPT } from "./latency.ts";
import { startModelTap } from "./model-tap.ts";
import { runProvisioning } from "./provision.ts";
import {
  type Figures,
  report,
  reportClaims,
  reportHot,
  reportLatency,
  reportRuntime,
  result,
  runtimeResult,
  tasks,
} from "./report.ts";
import { type RuntimeResult, runRuntimes } from "./runtime.ts";
import { homesRoot, machine, makeRepo, removeHome, stats, tempDir } from "./support.ts";
import { runTaskLatency } from "./tasks.ts";
import { reportUi, runUi, type UiResult } from "./ui.ts";

const ROOT = resolve(import.meta.dirname, "..");

function intEnv(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v === "") return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${v}`);
  return n;
}

const settings = {
  sessions: intEnv("BENCH_SESSIONS", 10),
  turns: intEnv("BENCH_TURNS", 5),
  tasks: intEnv("BENCH_TASKS", 8),
  concurrent: intEnv("BENCH_CONCURRENT", 8),
  queued: intEnv("BENCH_QUEUED", 10_000),
  claimSeconds: intEnv("BENCH_CLAIM_S", 8),
  uiLoads: intEnv("BENCH_UI_LOADS", 5),
  runtimeSessions: intEnv("BENCH_RUNTIME_SESSIONS", 5),
  runtimeTasks: intEnv("BENCH_RUNTIME_TASKS", 3),
  runtimeTurns: intEnv("BENCH_RUNTIME_TURNS", 3),
  gatewayCalls: intEnv("BENCH_GATEWAY_CALLS", 20),
  words: 200,
  chunkDelayMs: 20,
  warm: 2,
  healthFailures: 20,
};
// A safety net against a hang, not the budget: the run takes ~9 min on 2 quiet cores (phase 7 ~4),
// but a machine busy with other work can stretch every harness start several times over.
const TIMEOUT_S = intEnv("BENCH_TIMEOUT_S", 1200);
const ONLY = process.env.BENCH_ONLY;
const ONLY_PHASES = ["ui", "runtime", "claims", "latency", "hot", "gateway"];
if (ONLY !== undefined && ONLY !== "" && !ONLY_PHASES.includes(ONLY))
  throw new Error(`BENCH_ONLY must be one of ${ONLY_PHASES.join(", ")}, got ${ONLY}`);
const KEEP = process.env.BENCH_KEEP === "1";
/** Short, so the pool stops the previous sample's harness quickly (cold phases wait for that). */
const QUICK_IDLE = { idleMs: 1000, tickMs: 500 };
/**
 * Every phase. The pool replaces a harness after healthFailures health checks in a row miss their
 * 2 s deadline; with the cores oversubscribed by other work (other agents' test runs), a harness
 * busy with a first turn answers that late for a few seconds, and the default (3) then kills it
 * mid-turn and fails the sample. The health policy is not what this bench measures.
 */
const HEALTH = { healthFailures: settings.healthFailures };
/**
 * Every phase, likewise: a harness gets 120 s to answer its first health check, whatever the
 * configured default. On oversubscribed cores OpenCode alone can take 30 s and more to boot, and a
 * deadline that cuts it stops it and retries, failing the sample; the boot is what phases 1 and 7
 * measure, not what they should cut.
 */
const READY = { readyTimeoutMs: 120_000 };

// Streamed turns answer with `words` words, one SSE chunk per word (the scripted model splits after
// each space), chunkDelayMs apart: a steady stream like a fast real model's. Hang turns send a
// little text and then never finish, which holds a session live for as long as the bench wants.
const scenario: Scenario = {
  rules: [
    {
      match: STREAM_PROMPT,
      steps: [
        {
          text: Array.from({ length: settings.words }, (_, i) => `word${i + 1}`).join(" "),
          chunkDelayMs: settings.chunkDelayMs,
        },
      ],
    },
    { match: HANG_PROMPT, steps: [{ hang: true, text: "Working on it" }] },
  ],
  default: [{ text: "Hello from the bench." }],
};

const out = (s = "") => process.stdout.write(`${s}\n`);
const progress = (s: string) => process.stderr.write(`[bench] ${s}\n`);
const load = () => loadavg().map((x) => Math.round(x * 100) / 100);

let phases: Phases | undefined;

async function main(signal: AbortSignal, cleanups: (() => unknown)[]): Promise<void> {
  const started = Date.now();
  const pgHome = tempDir("pg");
  const root = homesRoot();
  if (!KEEP)
    cleanups.push(
      () => removeHome(pgHome),
      () => removeHome(root),
    );
  else progress(`keeping ${root} and ${pgHome}`);
  const pg = await startEmbeddedPostgres(pgHome, createLogger("warn"));
  cleanups.push(() => pg.stop());
  const model = await startScriptedModel({ scenario });
  cleanups.push(() => model.close());
  phases = new Phases(root, pg.url, model);
  // Where a first turn's time goes: OpenCode's own preparation before it asks the model, or after.
  // The prompts carry `(<marker>)`: matched with the parentheses, bench-session-1 is not -10's prefix.
  const modelAsked = (marker: string) =>
    model.requests.find((r) => r.kind === "agent" && JSON.stringify(r.messages).includes(`(${marker})`))
      ?.time;
  const ps = phases;
  /** Boots a control plane whose close is also one of the run's cleanups (it is idempotent). */
  const boot = async (...[name, pool, opts]: Parameters<Phases["boot"]>): Promise<Phase> => {
    // No warm workspaces but in the phase that measures them: a checkout made ahead for every new
    // repository a phase uses would compete with its samples for the cores.
    const p = await ps.boot(name, { warmWorkspaces: 0, ...pool }, { ...opts, harness: READY });
    cleanups.push(() => p.close());
    return p;
  };
  /** Boots a phase's control plane, runs fn against it, and always closes it (stops its harnesses). */
  const phase = async <T>(
    name: string,
    pool: Parameters<Phases["boot"]>[1],
    fn: (p: Phase) => Promise<T>,
  ): Promise<T> => {
    const p = await boot(name, { ...HEALTH, ...pool });
    try {
      return await fn(p);
    } finally {
      await p.close();
    }
  };

  // The same opencode and default runtime the phases' control planes resolve (they are given the same env).
  const defaults = loadConfig({ env: { FLOTILLA_HOME: root, PATH: process.env.PATH } });
  const m = machine(defaults.harness.opencodeBin, ROOT);
  out(`Flotilla bench  ${new Date().toISOString()}  commit ${m.commit}`);
  out(`machine: ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.platform}`);
  out(`software: node ${m.node}, opencode ${m.opencode}, embedded postgres, scripted model`);
  const loadStart = load();
  // Other work on the machine (test runs, other harnesses) shows up directly in these figures.
  out(`load average at start: ${loadStart.join(" ")} (1/5/15 min, ${m.cpus} cores)`);
  const runtimeSettings =
    `BENCH_RUNTIME_SESSIONS=${settings.runtimeSessions} BENCH_RUNTIME_TASKS=${settings.runtimeTasks} ` +
    `BENCH_RUNTIME_TURNS=${settings.runtimeTurns}`;
  const common = `${settings.words} deltas/turn every ${settings.chunkDelayMs} ms; every phase: pool.healthFailures=${HEALTH.healthFailures} harness.readyTimeoutMs=${READY.readyTimeoutMs}`;
  if (ONLY === "latency")
    out(`settings: BENCH_TURNS=${settings.turns}, ${common}; runtime ${defaults.runtime}`);
  else if (ONLY === "claims")
    out(`settings: BENCH_QUEUED=${settings.queued} BENCH_CLAIM_S=${settings.claimSeconds}`);
  else if (ONLY === "ui") out(`settings: BENCH_UI_LOADS=${settings.uiLoads}; runtime ${defaults.runtime}`);
  else if (ONLY === "runtime") out(`settings: ${runtimeSettings}, ${common}`);
  else
    out(
      `settings: BENCH_SESSIONS=${settings.sessions} BENCH_TURNS=${settings.turns} BENCH_TASKS=${settings.tasks} ` +
        `BENCH_CONCURRENT=${settings.concurrent} BENCH_QUEUED=${settings.queued} BENCH_CLAIM_S=${settings.claimSeconds} ` +
        `BENCH_UI_LOADS=${settings.uiLoads} ${runtimeSettings}, ${common}; phases 1–6: runtime ${defaults.runtime}`,
    );
  out();
  const loads: Record<string, number[]> = {};

  const runtimePhase = (): Promise<RuntimeResult> =>
    runRuntimes({
      boot: (name, pool, opts) => boot(name, { ...HEALTH, ...pool }, opts),
      settings: {
        sessions: settings.runtimeSessions,
        tasks: settings.runtimeTasks,
        turns: settings.runtimeTurns,
        warm: settings.warm,
      },
      quickIdle: QUICK_IDLE,
      modelUrl: model.url,
      modelAsked,
      signal,
      progress,
      load: () => load()[0]!,
    });
  if (ONLY === "runtime") {
    const runtime = await runtimePhase();
    reportRuntime(out, runtime);
    const problems = ps.problems();
    out();
    out(`server logs: ${problems.length} warn/error lines${problems.length ? " (first 5 below)" : ""}`);
    for (const l of problems.slice(0, 5)) out(`  ${l}`);
    const loadEnd = load();
    out(`load average at end: ${loadEnd.join(" ")}; run took ${Math.round((Date.now() - started) / 1000)} s`);
    out(
      `BENCH_RESULT ${JSON.stringify({
        machine: m,
        runtime: runtimeResult(runtime),
        durationS: Math.round((Date.now() - started) / 100) / 10,
        serverLogProblems: problems.length,
        load: { start: loadStart, end: loadEnd },
      })}`,
    );
    return;
  }

  /** 8. The model gateway: the same completion straight from the model and through the gateway. */
  const gatewayPhase = async (): Promise<GatewayResult> => {
    progress(
      `8. gateway: ${settings.gatewayCalls} calls straight to the model, ${settings.gatewayCalls} through the gateway`,
    );
    const tap = await startModelTap(model.url, STREAM_PROMPT);
    cleanups.push(() => tap.close());
    const p = await boot("gateway", { ...HEALTH, warm: 0 }, { modelUrl: tap.url });
    try {
      return await runGateway({
        client: p.client,
        server: p.server,
        tap,
        marker: STREAM_PROMPT,
        calls: settings.gatewayCalls,
        signal,
        progress,
      });
    } finally {
      await p.close();
      await tap.close();
    }
  };
  const gatewaySummary = (g: GatewayResult) => ({
    ttftDirectP50: stats(g.direct.map((c) => c.ttftMs)).p50,
    ttftGatewayP50: stats(g.gateway.map((c) => c.ttftMs)).p50,
    chunkDirect: stats(g.direct.flatMap((c) => c.hopMs)),
    chunkGateway: stats(g.gateway.flatMap((c) => c.hopMs)),
  });
  if (ONLY === "gateway") {
    const g = await gatewayPhase();
    reportGateway(out, g);
    out(`BENCH_RESULT ${JSON.stringify({ machine: m, gateway: gatewaySummary(g) })}`);
    return;
  }

  const uiPhase = (): Promise<UiResult | undefined> =>
    phase("ui", { warm: 0 }, (p) =>
      runUi({ client: p.client, url: p.server.url, token: p.token, loads: settings.uiLoads, progress }),
    );
  if (ONLY === "ui") {
    progress(`6. UI first load: ${settings.uiLoads} loads`);
    const ui = await uiPhase();
    reportUi(out, ui, "6");
    out(`BENCH_RESULT ${JSON.stringify({ machine: m, ui })}`);
    return;
  }

  const claimPhase = () => {
    progress(`3. claims: ${settings.queued} queued tasks, up to ${settings.claimSeconds} s per run`);
    return runClaims({
      pgUrl: pg.url,
      queued: settings.queued,
      maxClaims: settings.queued,
      maxSeconds: settings.claimSeconds,
      signal,
      progress,
    });
  };
  const latencyPhase = () => {
    progress(`2. latency: ${settings.turns} streamed turns`);
    return phase("latency", { warm: 0 }, (p) =>
      runLatency({
        client: p.client,
        server: p.server,
        home: p.home,
        turns: settings.turns,
        signal,
        progress,
      }),
    );
  };
  if (ONLY === "latency") {
    reportLatency(out, await latencyPhase());
    return;
  }

  /**
   * 4h. Tasks on a hot repository: one repository, its project made hot by a first session (not
   * measured), its harness left running (the default idle time). With pool.warmWorkspaces=1 each
   * measured task takes a warm workspace made ahead (the next is waited for before each submit);
   * the baseline, in the same run, is the same with warmWorkspaces=0 (a clone per task, set up by
   * its first prompt).
   */
  const hotPhase = (warmWorkspaces: 0 | 1) =>
    phase(`tasks-hot-${warmWorkspaces}`, { warm: 0, warmWorkspaces, tickMs: 500 }, async (p) => {
      const repo = makeRepo();
      try {
        progress(`4h. hot repository, warmWorkspaces=${warmWorkspaces}: heating ${repo}`);
        const heat = await p.client.sessions.create({ repo, prompt: "hello from the bench (heat)" });
        await poll(
          async () => ((await p.client.sessions.get(heat.id)).status === "idle" ? true : undefined),
          "the heating session to finish its turn",
          120_000,
          signal,
        );
        await p.client.sessions.delete(heat.id, { workspace: true });
        const { db } = p.server.services;
        const warm = p.server.services.warmWorkspaces;
        return await runTaskLatency({
          client: p.client,
          mode: "hot",
          hot: {
            repo,
            takesWarm: warmWorkspaces > 0,
            ready: async () => {
              // The project's harness up and nothing starting; with warm workspaces, one ready (a
              // pass that made one has also set it up by the time kick() returns).
              const hs = (await p.client.harnesses()).filter((h) => LIVE.includes(h.state));
              if (hs.length !== 1 || hs[0]!.state !== "ready") return undefined;
              if (warmWorkspaces === 0) return [];
              await warm.kick();
              const { rows } = await db.query<{ id: string }>(
                "select id from workspaces where repo = $1 and warm_at is not null and deleted_at is null",
                [repo],
              );
              return rows.length ? rows.map((r) => r.id) : undefined;
            },
          },
          count: settings.tasks,
          warm: 0,
          signal,
          modelAsked,
          label: `bench-task-hot${warmWorkspaces}`,
          onSample: (i, x) =>
            progress(
              `task hot (warmWorkspaces=${warmWorkspaces}) ${i + 1}/${settings.tasks}: first delta at ${Math.round(x.firstDeltaAtMs)} ms`,
            ),
        });
      } finally {
        removeHome(repo);
      }
    });
  const hotPhases = async () => ({ cloned: await hotPhase(0), warm: await hotPhase(1) });
  if (ONLY === "hot") {
    const hot = await hotPhases();
    reportHot(out, hot);
    out(
      `BENCH_RESULT ${JSON.stringify({ machine: m, enqueueToRunningHot: { cloned: tasks(hot.cloned), warm: tasks(hot.warm) } })}`,
    );
    return;
  }
  if (ONLY === "claims") {
    const claims = await claimPhase();
    reportClaims(out, claims);
    out(`BENCH_RESULT ${JSON.stringify({ machine: m, claims })}`);
    return;
  }

  progress(`1. cold provisioning: ${settings.sessions} sessions, one at a time`);
  const provisioning = await phase("provision", { warm: 0, ...QUICK_IDLE }, (p) =>
    runProvisioning(p.client, settings.sessions, signal, modelAsked, (i, s) =>
      progress(
        `session ${i + 1}/${settings.sessions}: ready ${Math.round(s.readyMs)} ms, turn ${Math.round(s.turnFinishedMs)} ms`,
      ),
    ),
  );
  loads.provisioning = load();

  const latency = await latencyPhase();
  loads.latency = load();

  const claims = await claimPhase();
  loads.claims = load();

  const taskPhase = (mode: "warm" | "cold") =>
    phase(`tasks-${mode}`, { warm: mode === "warm" ? settings.warm : 0, ...QUICK_IDLE }, (p) =>
      runTaskLatency({
        client: p.client,
        mode,
        count: settings.tasks,
        warm: mode === "warm" ? settings.warm : 0,
        signal,
        modelAsked,
        onSample: (i, s) =>
          progress(
            `task ${mode} ${i + 1}/${settings.tasks}: first delta at ${Math.round(s.firstDeltaAtMs)} ms`,
          ),
      }),
    );
  progress(`4. enqueue → running: ${settings.tasks} tasks warm, then ${settings.tasks} cold, then hot`);
  const tasksWarm = await taskPhase("warm");
  const tasksCold = await taskPhase("cold");
  const tasksHot = await hotPhases();
  loads.tasks = load();

  const densityPhase = (workspacesPerHarness: number): Promise<DensityResult> =>
    phase(`density-${workspacesPerHarness}`, { warm: 0, workspacesPerHarness, tickMs: 500 }, (p) =>
      runDensity({
        client: p.client,
        sessions: settings.concurrent,
        workspacesPerHarness,
        signal,
        progress,
      }),
    );
  progress(`5. density: ${settings.concurrent} hanging sessions of one project, shared vs one harness each`);
  const densityShared = await densityPhase(8);
  const densitySplit = await densityPhase(1);
  loads.density = load();

  progress(`6. UI first load: ${settings.uiLoads} loads`);
  const ui = await uiPhase();
  loads.ui = load();

  const runtime = await runtimePhase();
  loads.runtime = load();

  const gateway = await gatewayPhase();
  loads.gateway = load();

  const figures: Figures = {
    provisioning,
    latency,
    claims,
    tasksWarm,
    tasksCold,
    tasksHot,
    densityShared,
    densitySplit,
  };
  report(out, figures, settings);
  out();
  reportUi(out, ui, "6");
  out();
  reportRuntime(out, runtime);
  out();
  reportGateway(out, gateway);

  const problems = ps.problems();
  const controlPlaneRssBytes = process.memoryUsage().rss;
  out();
  out(
    `control plane RSS at end (this process: every phase's control plane, bench client, scripted model): ` +
      `${Math.round(controlPlaneRssBytes / 2 ** 20)} MiB`,
  );
  out(`server logs: ${problems.length} warn/error lines${problems.length ? " (first 5 below)" : ""}`);
  for (const l of problems.slice(0, 5)) out(`  ${l}`);
  const loadEnd = load();
  out(
    `load average after each phase: ${Object.entries(loads)
      .map(([k, v]) => `${k} ${v[0]}`)
      .join(", ")}`,
  );
  out(`load average at end: ${loadEnd.join(" ")}; run took ${Math.round((Date.now() - started) / 1000)} s`);
  const r = result(
    m,
    figures,
    { ...settings, runtime: defaults.runtime },
    {
      ui,
      runtime: runtimeResult(runtime),
      gateway: gatewaySummary(gateway),
      controlPlaneRssBytes,
      durationS: Math.round((Date.now() - started) / 100) / 10,
      serverLogProblems: problems.length,
      load: { start: loadStart, end: loadEnd, afterPhase: loads },
    },
  );
  out(`BENCH_RESULT ${JSON.stringify(r)}`);
}

/** Every resource is released on every exit path, in reverse order of creation. */
async function cleanup(cleanups: (() => unknown)[]): Promise<void> {
  for (const fn of cleanups.reverse()) {
    try {
      await fn();
    } catch (e) {
      progress(`cleanup step failed: ${(e as Error).message}`);
    }
  }
}

const ac = new AbortController();
const cleanups: (() => unknown)[] = [];
const watchdog = setTimeout(() => ac.abort(new Error(`bench exceeded ${TIMEOUT_S} s`)), TIMEOUT_S * 1000);
watchdog.unref();
let interrupts = 0;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    // A second signal means cleanup itself is stuck: leave at once.
    if (++interrupts > 1) process.exit(130);
    progress(`${sig}: stopping`);
    ac.abort(new Error(`interrupted by ${sig}`));
  });
}

try {
  await main(ac.signal, cleanups);
} catch (e) {
  process.exitCode = 1;
  progress(`failed: ${(e as Error).stack ?? e}`);
  // The server logs (warn and up) usually say why; they are about to be removed with the temp home.
  for (const l of phases?.problems().slice(-10) ?? []) progress(`server log: ${l.slice(0, 500)}`);
} finally {
  clearTimeout(watchdog);
  await cleanup(cleanups);
  // Nothing should be left holding the loop; if something is, say so rather than hang.
  setTimeout(() => {
    progress("something still held the event loop 10 s after cleanup; exiting");
    process.exit(process.exitCode ?? 1);
  }, 10_000).unref();
}
