import type { ClaimResult } from "./claim.ts";
import type { DensityResult } from "./density.ts";
import type { LatencyResult } from "./latency.ts";
import type { ProvisionSample } from "./provision.ts";
import { type Machine, type Stats, stats, table } from "./support.ts";
import type { TaskSample } from "./tasks.ts";

export interface Figures {
  provisioning: ProvisionSample[];
  latency: LatencyResult;
  claims: ClaimResult;
  tasksWarm: TaskSample[];
  tasksCold: TaskSample[];
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
}

const pick = <T>(xs: T[], k: keyof T) => stats(xs.map((x) => x[k] as number));
const mib = (b: number) => Math.round(b / 2 ** 20);
const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;

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

const tasks = (xs: TaskSample[]) => ({
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
  const l = f.latency;
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
  const c = f.claims;
  out(
    table(
      `3. Claim: claimNext with ${c.queued} queued tasks (${c.projects} projects, ${c.tokens} tokens, priorities -1/0/1)`,
      [
        ...c.runs.flatMap((r): [string, Stats][] => [
          [`${r.claimers} claimer${r.claimers > 1 ? "s" : ""}: claimNext call`, r.claimMs],
          [`${r.claimers} claimer${r.claimers > 1 ? "s" : ""}: finish (mark succeeded)`, r.finishMs],
        ]),
        ["baseline: `select 1` round trip", c.selectOneMs],
        ["baseline: tx with the claim lock only", c.lockTxMs],
      ],
    ),
  );
  for (const r of c.runs)
    out(
      `   ${r.claimers} claimer${r.claimers > 1 ? "s" : ""}: ${r.tasksPerS} tasks/s  <==  (${r.claims} claimed in ${r.seconds} s, ` +
        `queue ${c.queued} → ${r.queuedAfter}; claim p50 = ${ratio(r.claimMs.p50, c.selectOneMs.p50)} × select 1)`,
    );
  out(`   tasks claimed twice: ${c.duplicates}. Limits never bind (1e9); each run starts from a full queue.`);
  out();
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
      coldOverWarmP50: ratio(tc.firstDeltaAtMs.p50, tw.firstDeltaAtMs.p50),
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
    controlPlaneRssMiB: mib(extra.controlPlaneRssBytes),
    serverLogProblems: extra.serverLogProblems,
    durationS: extra.durationS,
    load: extra.load,
  };
}
