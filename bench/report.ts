import type { ClaimResult } from "./claim.ts";
import type { DensityResult } from "./density.ts";
import type { LatencyResult } from "./latency.ts";
import type { ProvisionSample } from "./provision.ts";
import type { PerRuntime, RuntimeResult } from "./runtime.ts";
import { type Machine, type Stats, stats, table } from "./support.ts";
import type { TaskSample } from "./tasks.ts";

export interface Figures {
  provisioning: ProvisionSample[];
  latency: LatencyResult;
  claims: ClaimResult;
  tasksWarm: TaskSample[];
  tasksCold: TaskSample[];
  tasksHot: { cloned: TaskSample[]; warm: TaskSample[] };
  densityShared: DensityResult;
  densitySplit: DensityResult;
}

export interface Settings {
  sessions: number;
  turns: number;
  tasks: number;
  concurrent: number;
  queued: number;
  claimSeconds: number;
  words: number;
  chunkDelayMs: number;
  warm: number;
  healthFailures: number;
  /** The runtime phases 1–6 ran (the configured default). */
  runtime?: string;
}

const pick = <T>(xs: T[], k: keyof T) => stats(xs.map((x) => x[k] as number));
const mib = (b: number) => Math.round(b / 2 ** 20);
const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;
/** a / b, or null where it means nothing (no sample, or a base at or below 0). */
const ratioOrNull = (a: number, b: number) =>
  Number.isFinite(a) && Number.isFinite(b) && b > 0 ? ratio(a, b) : null;

const provisioning = (xs: ProvisionSample[]) => ({
  createMs: pick(xs, "createMs"),
  firstEventMs: pick(xs, "firstEventMs"),
  readyMs: pick(xs, "readyMs"),
  readyAtMs: pick(xs, "readyAtMs"),
  harnessBootMs: pick(xs, "harnessBootMs"),
  turnStartedMs: pick(xs, "turnStartedMs"),
  modelAskedMs: pick(xs, "modelAskedMs"),
  firstDeltaMs: pick(xs, "firstDeltaMs"),
  turnFinishedMs: pick(xs, "turnFinishedMs"),
  deleteMs: pick(xs, "deleteMs"),
});

export const tasks = (xs: TaskSample[]) => ({
  submitMs: pick(xs, "submitMs"),
  claimedAtMs: pick(xs, "claimedAtMs"),
  turnStartedAtMs: pick(xs, "turnStartedAtMs"),
  modelAskedAtMs: pick(xs, "modelAskedAtMs"),
  firstDeltaAtMs: pick(xs, "firstDeltaAtMs"),
  firstDeltaSseMs: pick(xs, "firstDeltaSseMs"),
});

const density = (d: DensityResult) => ({
  ...d,
  rssMiB: mib(d.rssBytes),
  rssPerHarnessMiB: d.rssPerHarnessBytes.map(mib),
  controlPlaneRssMiB: mib(d.controlPlaneRssBytes),
});

const claimersLabel = (r: { claimers: number; batch: number }) =>
  `${r.claimers} claimer${r.claimers > 1 ? "s" : ""}, batch ${r.batch}`;

export function report(out: (s?: string) => void, f: Figures, s: Settings): void {
  const p = provisioning(f.provisioning);
  out(
    table(
      `1. COLD session provisioning (${f.provisioning.length} sessions, sequential; pool.warm=0, new repo = new shard each)`,
      [
        ["POST /sessions answered", p.createMs],
        ["first event over SSE", p.firstEventMs],
        ["harness.state ready over SSE (cold)  <==", p.readyMs],
        ["harness.state ready, by event `at`", p.readyAtMs],
        ["  of which harness boot (server)", p.harnessBootMs],
        ["turn.started over SSE", p.turnStartedMs],
        ["model asked (scripted model's clock)", p.modelAskedMs],
        ["first text.delta over SSE", p.firstDeltaMs],
        ["first turn finished over SSE", p.turnFinishedMs],
        ["DELETE ?workspace=true", p.deleteMs],
      ],
    ),
  );
  out("   times from sending POST /sessions, except harness boot (starting→ready `at`) and DELETE.");
  out("   every sample started a harness from nothing (checked), with no other harness running.");
  out();
  reportLatency(out, f.latency);
  reportClaims(out, f.claims);
  const tw = tasks(f.tasksWarm);
  const tc = tasks(f.tasksCold);
  out(
    table(`4. Enqueue → agent running (${s.tasks} tasks each, one at a time, new repo each)`, [
      ["warm: POST /tasks answered", tw.submitMs],
      ["warm: claimed (history `at`)", tw.claimedAtMs],
      ["warm: turn.started (`at`)", tw.turnStartedAtMs],
      ["warm: model asked (model's clock)", tw.modelAskedAtMs],
      ["warm: first text.delta (`at`)  <==", tw.firstDeltaAtMs],
      ["warm: first text.delta over SSE", tw.firstDeltaSseMs],
      ["cold: POST /tasks answered", tc.submitMs],
      ["cold: claimed (history `at`)", tc.claimedAtMs],
      ["cold: turn.started (`at`)", tc.turnStartedAtMs],
      ["cold: model asked (model's clock)", tc.modelAskedAtMs],
      ["cold: first text.delta (`at`)  <==", tc.firstDeltaAtMs],
      ["cold: first text.delta over SSE", tc.firstDeltaSseMs],
    ]),
  );
  out(
    `   warm: pool.warm=${s.warm}, submitted once ${s.warm} warm harnesses were ready; cold: pool.warm=0, no harness running.`,
  );
  out(
    "   times from sending POST /tasks; `at` = when Flotilla committed it. Agent running = its first text.delta.",
  );
  const overlapped = (xs: TaskSample[]) => xs.filter((x) => x.otherBoots > 0).length;
  out(
    `   samples with another harness booting before their first delta (the pool's warm top-up): ` +
      `warm ${overlapped(f.tasksWarm)}/${f.tasksWarm.length}, cold ${overlapped(f.tasksCold)}/${f.tasksCold.length}`,
  );
  out(
    `   first delta p50: cold ${tc.firstDeltaAtMs.p50} ms vs warm ${tw.firstDeltaAtMs.p50} ms (${ratio(tc.firstDeltaAtMs.p50, tw.firstDeltaAtMs.p50)} ×)`,
  );
  out();
  reportHot(out, f.tasksHot, tw.firstDeltaAtMs.p50);
  out();
  const ds = density(f.densityShared);
  const dp = density(f.densitySplit);
  out(
    `5. Sessions per GiB of harness RSS (${s.concurrent} live sessions of one project, after their first delta)`,
  );
  for (const [name, d] of [
    ["shared", ds],
    ["one each", dp],
  ] as const)
    out(
      `   ${`${name} (workspacesPerHarness=${d.workspacesPerHarness})`.padEnd(36)} ${d.harnesses} harness(es), ` +
        `${d.rssMiB} MiB total [${d.rssPerHarnessMiB.join(", ")}], ${d.sessionsPerGiB} sessions/GiB  <==, ` +
        `all streaming after ${d.allStreamingMs} ms, control plane ${d.controlPlaneRssMiB} MiB`,
    );
  out(`   shared / one each: ${ratio(ds.sessionsPerGiB, dp.sessionsPerGiB)} × the sessions per GiB`);
  out("   RSS as the pool samples it: the harness's whole process group (server and tool children).");
}

export function result(
  m: Machine,
  f: Figures,
  s: Settings,
  extra: {
    ui: unknown;
    runtime: ReturnType<typeof runtimeResult>;
    gateway: unknown;
    controlPlaneRssBytes: number;
    durationS: number;
    serverLogProblems: number;
    load: Record<string, unknown>;
  },
) {
  const l = f.latency;
  const tw = tasks(f.tasksWarm);
  const tc = tasks(f.tasksCold);
  const ds = density(f.densityShared);
  const dp = density(f.densitySplit);
  return {
    machine: m,
    settings: s,
    provisioningCold: provisioning(f.provisioning),
    latency: {
      addedMs: stats(l.added),
      ingestMs: stats(l.ingest),
      fanoutMs: stats(l.fanout),
      turnMs: stats(l.turnMs),
      pgPingMs: stats(l.pingMs),
      pgNotifyMs: stats(l.notifyMs),
      appendMs: stats(l.appendMs),
      commitSyncMs: stats(l.commitSyncMs),
      commitAsyncMs: stats(l.commitAsyncMs),
      directDeltas: l.directDeltas,
      flotillaDeltas: l.flotillaDeltas,
      matched: l.matched,
      textMismatch: l.textMismatch,
    },
    claims: {
      ...f.claims,
      claimVsSelectOneP50: f.claims.runs.map((r) => ratio(r.claimMs.p50, f.claims.selectOneMs.p50)),
    },
    enqueueToRunning: {
      measure: "POST /tasks sent → first text.delta of the task's session, by event `at`",
      warm: tw,
      cold: tc,
      hotCloned: tasks(f.tasksHot.cloned),
      hotWarmWorkspace: tasks(f.tasksHot.warm),
      coldOverWarmP50: ratio(tc.firstDeltaAtMs.p50, tw.firstDeltaAtMs.p50),
      hotClonedOverWarmWorkspaceP50: ratio(
        tasks(f.tasksHot.cloned).firstDeltaAtMs.p50,
        tasks(f.tasksHot.warm).firstDeltaAtMs.p50,
      ),
      overlappedByOtherBoot: {
        warm: f.tasksWarm.filter((x) => x.otherBoots > 0).length,
        cold: f.tasksCold.filter((x) => x.otherBoots > 0).length,
      },
    },
    density: {
      shared: ds,
      oneEach: dp,
      sharedOverOneEach: ratio(ds.sessionsPerGiB, dp.sessionsPerGiB),
    },
    runtime: extra.runtime,
    controlPlaneRssMiB: mib(extra.controlPlaneRssBytes),
    serverLogProblems: extra.serverLogProblems,
    durationS: extra.durationS,
    load: extra.load,
  };
}

const latencyStats = (l: LatencyResult) => ({
  addedMs: stats(l.added),
  ingestMs: stats(l.ingest),
  fanoutMs: stats(l.fanout),
  modelToDirectMs: stats(l.modelToDirect),
  modelToClientMs: stats(l.modelToClient),
  turnMs: stats(l.turnMs),
  directDeltas: l.directDeltas,
  flotillaDeltas: l.flotillaDeltas,
  matched: l.matched,
  textMismatch: l.textMismatch,
});

interface CompareRow {
  /** The figure's name, as in the per-runtime JSON (and phases 1, 2 and 4 where it exists there). */
  measure: string;
  label: string;
  headline: boolean;
  sandbox: Stats;
  local: Stats;
}

function compareRows(r: RuntimeResult): CompareRow[] {
  const rows: CompareRow[] = [];
  const add = <T>(
    per: PerRuntime<T>,
    group: string,
    label: string,
    name: string,
    get: (x: T) => Stats,
    headline = false,
  ) =>
    rows.push({
      measure: `${group}.${name}`,
      label,
      headline,
      sandbox: get(per.sandbox),
      local: get(per.local),
    });
  const cold = { sandbox: provisioning(r.provisioning.sandbox), local: provisioning(r.provisioning.local) };
  const g1 = "provisioningCold";
  add(cold, g1, "cold: harness.state ready over SSE  <==", "readyMs", (x) => x.readyMs, true);
  add(cold, g1, "cold:   of which harness boot (server)", "harnessBootMs", (x) => x.harnessBootMs);
  add(cold, g1, "cold: first text.delta over SSE", "firstDeltaMs", (x) => x.firstDeltaMs);
  add(cold, g1, "cold: first turn finished over SSE", "turnFinishedMs", (x) => x.turnFinishedMs);
  const warm = { sandbox: tasks(r.tasksWarm.sandbox), local: tasks(r.tasksWarm.local) };
  const g4 = "enqueueToRunningWarm";
  add(warm, g4, "warm: claimed (history `at`)", "claimedAtMs", (x) => x.claimedAtMs);
  add(warm, g4, "warm: turn.started (`at`)", "turnStartedAtMs", (x) => x.turnStartedAtMs);
  add(warm, g4, "warm: first text.delta (`at`)  <==", "firstDeltaAtMs", (x) => x.firstDeltaAtMs, true);
  const lat = { sandbox: latencyStats(r.latency.sandbox), local: latencyStats(r.latency.local) };
  const g2 = "latency";
  add(lat, g2, "latency: t_flotilla − t_direct  <==", "addedMs", (x) => x.addedMs, true);
  add(lat, g2, "latency:   harness SSE → bus publish", "ingestMs", (x) => x.ingestMs);
  add(lat, g2, "latency:   bus publish → client SSE", "fanoutMs", (x) => x.fanoutMs);
  add(lat, g2, "latency: model chunk → harness SSE (direct)", "modelToDirectMs", (x) => x.modelToDirectMs);
  add(lat, g2, "latency: model chunk → client SSE  <==", "modelToClientMs", (x) => x.modelToClientMs, true);
  add(lat, g2, "latency: streamed turn (send → finished)", "turnMs", (x) => x.turnMs);
  return rows;
}

const times = (x: number | null) => (x === null ? "n/a" : `${x}×`);

/** The headline measures sample by sample (streamed turns: each turn's p50), in run order. */
function samples(r: RuntimeResult): Record<string, PerRuntime<number[]>> {
  const per = <T>(xs: PerRuntime<T[]>, f: (x: T) => number) => ({
    sandbox: xs.sandbox.map((x) => Math.round(f(x))),
    local: xs.local.map((x) => Math.round(f(x))),
  });
  return {
    "cold readyMs": per(r.provisioning, (x) => x.readyMs),
    "warm firstDeltaAtMs": per(r.tasksWarm, (x) => x.firstDeltaAtMs),
    "addedMs p50 by turn": per(r.latencyTurns, (x) => stats(x.added).p50),
    "modelToClientMs p50 by turn": per(r.latencyTurns, (x) => stats(x.modelToClient).p50),
  };
}

/** Section 7: every measure for sandbox and local side by side, and what the sandbox costs. */
export function reportRuntime(out: (s?: string) => void, r: RuntimeResult): void {
  const s = r.settings;
  const rows = compareRows(r);
  const title =
    `7. Runtime: sandbox vs local (${s.sessions} cold, ${s.tasks} warm, ${s.turns} streamed turns per runtime; ` +
    "samples alternated ABBA)";
  const w = Math.max(...rows.map((x) => x.label.length));
  const cols = ["n s/l", "sbx p50", "sbx p95", "loc p50", "loc p95", "× p50", "× p95"];
  const cell = (v: number | string) => String(v).padStart(9);
  const head = `${"(ms; × = sandbox / local)".padEnd(w)} ${cols.map(cell).join("")}`;
  out(title);
  out(head);
  out("-".repeat(head.length));
  for (const x of rows)
    out(
      `${x.label.padEnd(w)} ${[
        `${x.sandbox.n}/${x.local.n}`,
        x.sandbox.p50,
        x.sandbox.p95,
        x.local.p50,
        x.local.p95,
        times(ratioOrNull(x.sandbox.p50, x.local.p50)),
        times(ratioOrNull(x.sandbox.p95, x.local.p95)),
      ]
        .map(cell)
        .join("")}`,
    );
  out();
  for (const x of rows.filter((y) => y.headline))
    out(
      `   ${x.label.replace("  <==", "")}: sandbox costs ${times(ratioOrNull(x.sandbox.p50, x.local.p50))} local at p50 ` +
        `(${x.sandbox.p50} vs ${x.local.p50} ms), ${times(ratioOrNull(x.sandbox.p95, x.local.p95))} at p95 ` +
        `(${x.sandbox.p95} vs ${x.local.p95} ms)`,
    );
  out();
  out(
    "   each measure: one control plane per runtime (config `runtime`, otherwise identical), both up for the whole",
  );
  out(
    "   measure; a sample starts only when neither has a harness booting or stopping (beyond its warm set).",
  );
  out(
    `   cold: pool.warm=0, new repo each, every sample started a harness (checked). warm: pool.warm=${s.warm}, a warm harness taken (checked).`,
  );
  const overlapped = (xs: TaskSample[]) => xs.filter((x) => x.otherBoots > 0).length;
  out(
    `   warm samples with the pool's top-up booting before their first delta: sandbox ${overlapped(r.tasksWarm.sandbox)}/` +
      `${r.tasksWarm.sandbox.length}, local ${overlapped(r.tasksWarm.local)}/${r.tasksWarm.local.length}`,
  );
  out(
    "   latency: each streamed turn in a fresh session and harness (after a warm-up turn), the model behind a tap that",
  );
  out(
    "   stamps each chunk as it leaves for the harness. t_direct is the harness's SSE read from outside, i.e. through",
  );
  out(
    "   the sandbox's API bridge: t_flotilla − t_direct is Flotilla's own share and cannot show the bridges; model",
  );
  out(
    "   chunk → client SSE is the whole road (egress bridge, OpenCode, API bridge, Flotilla) and can. Values near 0 are noise.",
  );
  for (const rt of ["sandbox", "local"] as const) {
    const l = r.latency[rt];
    out(
      `   ${rt} deltas: ${l.directDeltas} from the harness, ${l.flotillaDeltas} from Flotilla, ${l.matched} matched, ` +
        `${l.modelToClient.length} matched to a model chunk, ${l.textMismatch} text mismatches`,
    );
  }
  out("   per sample, in run order (ms; ABBA: sandbox ran first in samples 1, 3, 5, ...):");
  for (const [name, xs] of Object.entries(samples(r)))
    out(`     ${name.padEnd(28)} sandbox ${xs.sandbox.join(" ")}  |  local ${xs.local.join(" ")}`);
  out(
    `   load average (1 min) after: ${Object.entries(r.load)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")}`,
  );
}

/** Section 7 for BENCH_RESULT. */
export function runtimeResult(r: RuntimeResult) {
  const per = (rt: "sandbox" | "local") => ({
    provisioningCold: provisioning(r.provisioning[rt]),
    enqueueToRunningWarm: tasks(r.tasksWarm[rt]),
    latency: latencyStats(r.latency[rt]),
    overlappedByOtherBoot: r.tasksWarm[rt].filter((x) => x.otherBoots > 0).length,
  });
  const brief = (x: Stats) => ({ n: x.n, p50: x.p50, p95: x.p95 });
  return {
    measure:
      "sandbox vs local runtime, one control plane each per measure, samples alternated ABBA; ratios = sandbox / local",
    settings: r.settings,
    compare: compareRows(r).map((x) => ({
      measure: x.measure,
      sandbox: brief(x.sandbox),
      local: brief(x.local),
      sandboxOverLocalP50: ratioOrNull(x.sandbox.p50, x.local.p50),
      sandboxOverLocalP95: ratioOrNull(x.sandbox.p95, x.local.p95),
    })),
    sandbox: per("sandbox"),
    local: per("local"),
    samples: samples(r),
    load: r.load,
  };
}

export function reportClaims(out: (s?: string) => void, c: ClaimResult): void {
  out(
    table(
      `3. Claim: claimBatch with ${c.queued} queued tasks (${c.projects} projects, ${c.tokens} tokens, priorities -1/0/1)`,
      [
        ...c.runs.flatMap((r): [string, Stats][] => [
          [`${claimersLabel(r)}: claimBatch call`, r.claimMs],
          [`${claimersLabel(r)}: finish (mark succeeded)`, r.finishMs],
        ]),
        ["baseline: `select 1` round trip", c.selectOneMs],
      ],
    ),
  );
  for (const r of c.runs)
    out(
      `   ${claimersLabel(r)}: ${r.tasksPerS} tasks/s  <==  (${r.claims} claimed in ${r.seconds} s, ${r.perCall} per call, ` +
        `queue ${c.queued} → ${r.queuedAfter}; call p50 = ${ratio(r.claimMs.p50, c.selectOneMs.p50)} × select 1)`,
    );
  out(
    `   tasks claimed twice: ${c.duplicates}. Limits never bind (${c.limits.maxConcurrent} each, at most claimers × batch run at once); each run starts from a full queue.`,
  );
  out();
}

export function reportLatency(out: (s?: string) => void, l: Figures["latency"]): void {
  out(
    table(`2. Latency Flotilla adds to text deltas (${l.turnMs.length} turns)`, [
      ["t_flotilla − t_direct  <==", stats(l.added)],
      ["  harness SSE → bus publish", stats(l.ingest)],
      ["  bus publish → client SSE", stats(l.fanout)],
      ["streamed turn (send → finished)", stats(l.turnMs)],
      ["idle: pg `select 1`", stats(l.pingMs)],
      ["idle: pg_notify", stats(l.notifyMs)],
      ["idle: EventLog.append(1 delta)", stats(l.appendMs)],
      ["idle: 1-row commit, sync commit on", stats(l.commitSyncMs)],
      ["idle: 1-row commit, sync commit off", stats(l.commitAsyncMs)],
    ]),
  );
  out(
    `   deltas: ${l.directDeltas} from the harness, ${l.flotillaDeltas} from Flotilla, ${l.matched} matched, ${l.textMismatch} text mismatches`,
  );
  out("   bus publish = in-process EventBus emit, right after the event's transaction commits.");
  out("   both streams are read by this one process: values within a few ms of 0 (even < 0) are noise.");
  out();
}

/** 4h: tasks on a hot repository, a clone each (baseline) vs a warm workspace each; against warm (a new repository) when given. */
export function reportHot(
  out: (s?: string) => void,
  xs: { cloned: TaskSample[]; warm: TaskSample[] },
  warmP50?: number,
): void {
  const c = tasks(xs.cloned);
  const w = tasks(xs.warm);
  out(
    table(
      `4h. Enqueue → agent running, hot repository (${xs.warm.length} tasks each, one at a time, one repo)`,
      [
        ["cloned: claimed (history `at`)", c.claimedAtMs],
        ["cloned: turn.started (`at`)", c.turnStartedAtMs],
        ["cloned: model asked (model's clock)", c.modelAskedAtMs],
        ["cloned: first text.delta (`at`)", c.firstDeltaAtMs],
        ["warm ws: claimed (history `at`)", w.claimedAtMs],
        ["warm ws: turn.started (`at`)", w.turnStartedAtMs],
        ["warm ws: model asked (model's clock)", w.modelAskedAtMs],
        ["warm ws: first text.delta (`at`)  <==", w.firstDeltaAtMs],
        ["warm ws: first text.delta over SSE", w.firstDeltaSseMs],
      ],
    ),
  );
  out(
    "   the project's harness running in both; cloned: pool.warmWorkspaces=0 (a clone per task, set up by its first prompt);",
  );
  out(
    "   warm ws: pool.warmWorkspaces=1, each task took a checkout made ahead (checked), set up and given a warm-up turn.",
  );
  out(
    `   first delta p50: cloned ${c.firstDeltaAtMs.p50} ms vs warm workspace ${w.firstDeltaAtMs.p50} ms (${ratio(c.firstDeltaAtMs.p50, w.firstDeltaAtMs.p50)} ×)` +
      (warmP50 !== undefined
        ? `; a new repository on a warm harness (4) ${warmP50} ms (${ratio(warmP50, w.firstDeltaAtMs.p50)} ×)`
        : ""),
  );
}
