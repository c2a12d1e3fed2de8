/**
 * `npm run bench`: one run against real components (embedded Postgres, `opencode serve` harnesses
 * started by Flotilla, the scripted model), control plane in this process.
 *   1. Session provisioning: POST /sessions → harness.state ready over SSE, one session at a time.
 *   2. Latency Flotilla adds to streamed text deltas: harness SSE vs Flotilla SSE, same clock.
 * Env: BENCH_SESSIONS (10), BENCH_TURNS (5), BENCH_TIMEOUT_S (600), BENCH_KEEP=1 keeps temp dirs.
 * Report on stdout, ending with one `BENCH_RESULT {json}` line; progress on stderr.
 */
import { createWriteStream, readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { FlotillaClient } from "@flotilla/client";
import { type Scenario, startScriptedModel } from "@flotilla/scripted-model";
import { createLogger, loadConfig, startEmbeddedPostgres, startFlotilla } from "@flotilla/server";
import { type LatencyResult, runLatency, STREAM_PROMPT } from "./latency.ts";
import { type ProvisionSample, runProvisioning } from "./provision.ts";
import { machine, removeHome, stats, table, tempDir } from "./support.ts";

const ROOT = resolve(import.meta.dirname, "..");

function intEnv(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v === "") return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${v}`);
  return n;
}

const SESSIONS = intEnv("BENCH_SESSIONS", 10);
const TURNS = intEnv("BENCH_TURNS", 5);
const TIMEOUT_S = intEnv("BENCH_TIMEOUT_S", 600);
const KEEP = process.env.BENCH_KEEP === "1";
const WORDS = 200;
const CHUNK_DELAY_MS = 20;

// Streamed turns answer with WORDS words, one SSE chunk per word (the scripted model splits after
// each space), CHUNK_DELAY_MS apart: a steady stream like a fast real model's.
const scenario: Scenario = {
  rules: [
    {
      match: STREAM_PROMPT,
      steps: [
        {
          text: Array.from({ length: WORDS }, (_, i) => `word${i + 1}`).join(" "),
          chunkDelayMs: CHUNK_DELAY_MS,
        },
      ],
    },
  ],
  default: [{ text: "Hello from the bench." }],
};

const out = (s = "") => process.stdout.write(`${s}\n`);
const progress = (s: string) => process.stderr.write(`[bench] ${s}\n`);

let logFile: string | undefined;

async function main(signal: AbortSignal, cleanups: (() => unknown)[]): Promise<void> {
  const started = Date.now();
  const pgHome = tempDir("pg");
  const home = tempDir("home");
  if (!KEEP)
    cleanups.push(
      () => removeHome(pgHome),
      () => removeHome(home),
    );
  else progress(`keeping ${home} and ${pgHome}`);
  logFile = join(home, "flotilla.log");
  const logStream = createWriteStream(logFile);
  cleanups.push(() => new Promise((r) => logStream.end(r)));
  const logger = createLogger("warn", { destination: logStream });

  const pg = await startEmbeddedPostgres(pgHome, logger);
  cleanups.push(() => pg.stop());
  const model = await startScriptedModel({ scenario });
  cleanups.push(() => model.close());
  const config = loadConfig({
    env: { FLOTILLA_HOME: home, DATABASE_URL: pg.url, PATH: process.env.PATH },
    overrides: {
      port: 0,
      providers: {
        scripted: {
          name: "Scripted",
          baseURL: model.url,
          models: { "scripted-1": { name: "Scripted", toolCall: true } },
        },
      },
      defaultModel: "scripted/scripted-1",
      permission: "allow",
      demo: "off",
      quiet: true,
    },
  });
  const server = await startFlotilla(config, logger);
  cleanups.push(() => server.close());
  const token = readFileSync(join(home, "admin.token"), "utf8").trim();
  const client = new FlotillaClient({ baseUrl: server.url, token });

  const m = machine(config.harness.opencodeBin, ROOT);
  out(`Flotilla bench  ${new Date().toISOString()}  commit ${m.commit}`);
  out(`machine: ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.platform}`);
  out(`software: node ${m.node}, opencode ${m.opencode}, embedded postgres, scripted model`);
  const loadStart = loadavg().map((x) => Math.round(x * 100) / 100);
  // Other work on the machine (test runs, other harnesses) shows up directly in these figures.
  out(`load average at start: ${loadStart.join(" ")} (1/5/15 min, ${m.cpus} cores)`);
  out(
    `settings: BENCH_SESSIONS=${SESSIONS} BENCH_TURNS=${TURNS}, ${WORDS} deltas/turn every ${CHUNK_DELAY_MS} ms`,
  );
  out();

  progress(`provisioning ${SESSIONS} sessions, one at a time`);
  const prov = await runProvisioning(client, SESSIONS, signal, (i, s) =>
    progress(
      `session ${i + 1}/${SESSIONS}: ready ${Math.round(s.readyMs)} ms, turn ${Math.round(s.turnFinishedMs)} ms`,
    ),
  );
  progress(`latency: ${TURNS} streamed turns`);
  const lat = await runLatency({ client, server, home, turns: TURNS, signal, progress });
  report(prov, lat);

  const problems = readFileSync(logFile, "utf8")
    .split("\n")
    .filter((l) => l.trim());
  out();
  out(`server log: ${problems.length} warn/error lines${problems.length ? " (first 5 below)" : ""}`);
  for (const l of problems.slice(0, 5)) out(`  ${l.slice(0, 300)}`);
  const loadEnd = loadavg().map((x) => Math.round(x * 100) / 100);
  out(`load average at end: ${loadEnd.join(" ")}; run took ${Math.round((Date.now() - started) / 1000)} s`);
  const r = result(m, prov, lat, (Date.now() - started) / 1000, problems.length);
  out(`BENCH_RESULT ${JSON.stringify({ ...r, load: { start: loadStart, end: loadEnd } })}`);
}

const pick = (xs: ProvisionSample[], k: keyof ProvisionSample) => stats(xs.map((x) => x[k]));

function report(prov: ProvisionSample[], lat: LatencyResult): void {
  out(
    table(`1. Session provisioning (${prov.length} sessions, sequential, fresh repo each)`, [
      ["POST /sessions answered", pick(prov, "createMs")],
      ["first event over SSE", pick(prov, "firstEventMs")],
      ["harness.state ready over SSE  <==", pick(prov, "readyMs")],
      ["harness.state ready, by event `at`", pick(prov, "readyAtMs")],
      ["  of which harness boot (server)", pick(prov, "harnessBootMs")],
      ["turn.started over SSE", pick(prov, "turnStartedMs")],
      ["first text.delta over SSE", pick(prov, "firstDeltaMs")],
      ["first turn finished over SSE", pick(prov, "turnFinishedMs")],
      ["DELETE ?workspace=true", pick(prov, "deleteMs")],
    ]),
  );
  out("   times from sending POST /sessions, except harness boot (starting→ready `at`) and DELETE.");
  out();
  out(
    table(`2. Latency Flotilla adds to text deltas (${lat.turnMs.length} turns)`, [
      ["t_flotilla − t_direct  <==", stats(lat.added)],
      ["  harness SSE → bus publish", stats(lat.ingest)],
      ["  bus publish → client SSE", stats(lat.fanout)],
      ["streamed turn (send → finished)", stats(lat.turnMs)],
      ["idle: pg `select 1`", stats(lat.pingMs)],
      ["idle: pg_notify", stats(lat.notifyMs)],
      ["idle: EventLog.append(1 delta)", stats(lat.appendMs)],
      ["idle: 1-row commit, sync commit on", stats(lat.commitSyncMs)],
      ["idle: 1-row commit, sync commit off", stats(lat.commitAsyncMs)],
    ]),
  );
  out(
    `   deltas: ${lat.directDeltas} from the harness, ${lat.flotillaDeltas} from Flotilla, ${lat.matched} matched, ${lat.textMismatch} text mismatches`,
  );
  out("   bus publish = in-process EventBus emit, right after the event's transaction commits.");
  out("   both streams are read by this one process: values within a few ms of 0 (even < 0) are noise.");
}

function result(
  m: ReturnType<typeof machine>,
  prov: ProvisionSample[],
  lat: LatencyResult,
  durationS: number,
  logProblems: number,
) {
  return {
    machine: m,
    settings: { sessions: SESSIONS, turns: TURNS, words: WORDS, chunkDelayMs: CHUNK_DELAY_MS },
    provisioning: {
      createMs: pick(prov, "createMs"),
      firstEventMs: pick(prov, "firstEventMs"),
      readyMs: pick(prov, "readyMs"),
      readyAtMs: pick(prov, "readyAtMs"),
      harnessBootMs: pick(prov, "harnessBootMs"),
      turnStartedMs: pick(prov, "turnStartedMs"),
      firstDeltaMs: pick(prov, "firstDeltaMs"),
      turnFinishedMs: pick(prov, "turnFinishedMs"),
      deleteMs: pick(prov, "deleteMs"),
    },
    latency: {
      addedMs: stats(lat.added),
      ingestMs: stats(lat.ingest),
      fanoutMs: stats(lat.fanout),
      turnMs: stats(lat.turnMs),
      pgPingMs: stats(lat.pingMs),
      pgNotifyMs: stats(lat.notifyMs),
      appendMs: stats(lat.appendMs),
      commitSyncMs: stats(lat.commitSyncMs),
      commitAsyncMs: stats(lat.commitAsyncMs),
      directDeltas: lat.directDeltas,
      flotillaDeltas: lat.flotillaDeltas,
      matched: lat.matched,
      textMismatch: lat.textMismatch,
    },
    serverLogProblems: logProblems,
    durationS: Math.round(durationS * 10) / 10,
  };
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
  // The server log (warn and up) usually says why; it is about to be removed with the temp home.
  const tail = logFile ? readFileSync(logFile, "utf8").trim().split("\n").slice(-10) : [];
  for (const l of tail) if (l) progress(`server log: ${l.slice(0, 500)}`);
} finally {
  clearTimeout(watchdog);
  await cleanup(cleanups);
  // Nothing should be left holding the loop; if something is, say so rather than hang.
  setTimeout(() => {
    progress("something still held the event loop 10 s after cleanup; exiting");
    process.exit(process.exitCode ?? 1);
  }, 10_000).unref();
}
