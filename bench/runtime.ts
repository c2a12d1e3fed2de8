import type { Config } from "@flotilla/server";
import { type Phase, poll } from "./boot.ts";
import { type LatencyResult, mergeLatency, runLatency, STREAM_PROMPT } from "./latency.ts";
import { startModelTap } from "./model-tap.ts";
import { type ProvisionSample, runProvisioning } from "./provision.ts";
import { quiet, runTaskLatency, type TaskSample } from "./tasks.ts";

export type RuntimeName = Config["runtime"];

export interface PerRuntime<T> {
  sandbox: T;
  local: T;
}

export interface RuntimeSettings {
  /** Cold provisions per runtime. */
  sessions: number;
  /** Warm enqueue → first delta samples per runtime. */
  tasks: number;
  /** Streamed turns per runtime (each in a session and harness of its own). */
  turns: number;
  /** pool.warm of the warm control planes. */
  warm: number;
}

export interface RuntimeResult {
  settings: RuntimeSettings;
  provisioning: PerRuntime<ProvisionSample[]>;
  tasksWarm: PerRuntime<TaskSample[]>;
  latency: PerRuntime<LatencyResult>;
  /** The same, one result per streamed turn, in run order (the spread between turns shows noise). */
  latencyTurns: PerRuntime<LatencyResult[]>;
  /** Load average (1 min) after each measure. */
  load: Record<string, number>;
}

/**
 * Sample i runs sandbox then local when i is even, local then sandbox when odd (ABBA), so a drift
 * in the machine's load during the phase lands on both runtimes alike.
 */
export const order = (i: number): RuntimeName[] =>
  i % 2 === 0 ? ["sandbox", "local"] : ["local", "sandbox"];
const other = (r: RuntimeName): RuntimeName => (r === "sandbox" ? "local" : "sandbox");

export type Boot = (
  name: string,
  pool: Partial<Config["pool"]>,
  opts: { runtime: RuntimeName; modelUrl?: string },
) => Promise<Phase>;

/** Both runtimes' control planes of one measure, booted together and always both closed. */
async function pair<T>(
  boot: Boot,
  name: string,
  pool: Partial<Config["pool"]>,
  fn: (ps: PerRuntime<Phase>) => Promise<T>,
  modelUrl?: string,
): Promise<T> {
  const opened: Phase[] = [];
  try {
    const sandbox = await boot(`${name}-sandbox`, pool, { runtime: "sandbox", modelUrl });
    opened.push(sandbox);
    if (sandbox.config.runtime !== "sandbox")
      throw new Error(`${name}-sandbox booted ${sandbox.config.runtime}`);
    const local = await boot(`${name}-local`, pool, { runtime: "local", modelUrl });
    opened.push(local);
    if (local.config.runtime !== "local") throw new Error(`${name}-local booted ${local.config.runtime}`);
    return await fn({ sandbox, local });
  } finally {
    await Promise.allSettled(opened.map((p) => p.close()));
  }
}

/**
 * The sandbox runtime next to the local one, on the same machine in the same run: cold
 * provisioning (phase 1's measure), enqueue → first text delta with a warm harness (phase 4's warm
 * half) and the latency of streamed text deltas (phase 2's). Each measure boots one control plane
 * per runtime (config `runtime`), identical otherwise, and alternates their samples (ABBA); before
 * each sample both control planes must be quiet (no harness booting or stopping in either beyond
 * the warm set), so the measured start has the cores to itself as in phases 1 and 4.
 */
export async function runRuntimes(opts: {
  boot: Boot;
  settings: RuntimeSettings;
  /** Short idle, so the pool stops the previous sample's harness quickly. */
  quickIdle: Partial<Config["pool"]>;
  modelUrl: string;
  modelAsked: (marker: string) => number | undefined;
  signal: AbortSignal;
  progress: (s: string) => void;
  load: () => number;
}): Promise<RuntimeResult> {
  const { boot, settings: s, signal, progress } = opts;
  const load: Record<string, number> = {};
  const both = async (ps: PerRuntime<Phase>, r: RuntimeName, warm: number, what: string) =>
    poll(
      () => quiet(ps[other(r)].client, warm),
      `the ${other(r)} control plane to be quiet (${what})`,
      120_000,
      signal,
    );

  progress(`7a. runtime, cold provisioning: ${s.sessions} per runtime, interleaved`);
  const provisioning: PerRuntime<ProvisionSample[]> = { sandbox: [], local: [] };
  await pair(boot, "rt-provision", { warm: 0, ...opts.quickIdle }, async (ps) => {
    for (let i = 0; i < s.sessions; i++)
      for (const r of order(i)) {
        await both(ps, r, 0, "no harness");
        const [sample] = await runProvisioning(
          ps[r].client,
          1,
          signal,
          opts.modelAsked,
          () => {},
          `bench-rt-${r}-cold-${i + 1}`,
        );
        provisioning[r].push(sample!);
        progress(
          `${r} cold ${i + 1}/${s.sessions}: ready ${Math.round(sample!.readyMs)} ms, turn ${Math.round(sample!.turnFinishedMs)} ms`,
        );
      }
  });
  load.provisioning = opts.load();

  progress(
    `7b. runtime, warm enqueue → first delta: ${s.tasks} per runtime, interleaved, pool.warm=${s.warm}`,
  );
  const tasksWarm: PerRuntime<TaskSample[]> = { sandbox: [], local: [] };
  await pair(boot, "rt-tasks-warm", { warm: s.warm, ...opts.quickIdle }, async (ps) => {
    for (let i = 0; i < s.tasks; i++)
      for (const r of order(i)) {
        await both(ps, r, s.warm, `${s.warm} warm harnesses, nothing else`);
        const [sample] = await runTaskLatency({
          client: ps[r].client,
          mode: "warm",
          count: 1,
          warm: s.warm,
          signal,
          modelAsked: opts.modelAsked,
          onSample: () => {},
          label: `bench-rt-${r}-warm-${i + 1}`,
        });
        tasksWarm[r].push(sample!);
        progress(`${r} warm ${i + 1}/${s.tasks}: first delta at ${Math.round(sample!.firstDeltaAtMs)} ms`);
      }
  });
  load.tasksWarm = opts.load();

  progress(`7c. runtime, latency: ${s.turns} streamed turns per runtime, interleaved, through a model tap`);
  const tap = await startModelTap(opts.modelUrl, STREAM_PROMPT);
  const latency: PerRuntime<LatencyResult[]> = { sandbox: [], local: [] };
  // Streamed turns are numbered across the whole measure, so the tap tells them apart.
  let turn = 1000;
  try {
    await pair(
      boot,
      "rt-latency",
      { warm: 0, ...opts.quickIdle },
      async (ps) => {
        for (let i = 0; i < s.turns; i++)
          for (const r of order(i)) {
            await both(ps, r, 0, "no harness");
            await poll(() => quiet(ps[r].client, 0), `the ${r} control plane to be quiet`, 120_000, signal);
            const p = ps[r];
            const res = await runLatency({
              client: p.client,
              server: p.server,
              home: p.home,
              turns: 1,
              firstTurn: ++turn,
              modelSent: tap.sent,
              micro: false,
              signal,
              progress: (m) => progress(`${r} latency ${i + 1}/${s.turns}: ${m}`),
            });
            if (res.modelToClient.length === 0)
              throw new Error(`${r} latency: no delta matched a chunk the model tap saw`);
            latency[r].push(res);
          }
      },
      tap.url,
    );
  } finally {
    await tap.close();
  }
  load.latency = opts.load();

  return {
    settings: s,
    provisioning,
    tasksWarm,
    latency: { sandbox: mergeLatency(latency.sandbox), local: mergeLatency(latency.local) },
    latencyTurns: latency,
    load,
  };
}
