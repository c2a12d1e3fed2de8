import { performance } from "node:perf_hooks";
import { createLogger } from "@flotilla/server";
import { DEFAULT_ORG, TokenService } from "../packages/server/src/identity/tokens.ts";
import { migrate } from "../packages/server/src/platform/db/migrate.ts";
import { createPool, type Db } from "../packages/server/src/platform/db/pool.ts";
import { CLAIM_BATCH, claimBatch, type Limits } from "../packages/server/src/tasks/scheduler.ts";
import { createDatabase } from "./boot.ts";
import { type Stats, stats, time } from "./support.ts";

export interface ClaimRun {
  claimers: number;
  /** Tasks one claimBatch call may take. */
  batch: number;
  /** Tasks claimed (and then finished) in the run. */
  claims: number;
  seconds: number;
  tasksPerS: number;
  /** One claimBatch call, as its caller waits for it. */
  claimMs: Stats;
  /** Tasks per claimBatch call that took any. */
  perCall: number;
  /** Marking the claimed tasks succeeded (one statement), which the loop does between claims. */
  finishMs: Stats;
  /** Queued tasks when the run ended. */
  queuedAfter: number;
}

export interface ClaimResult {
  queued: number;
  projects: number;
  tokens: number;
  runs: ClaimRun[];
  /** Baseline on the same pool: a bare round trip. */
  selectOneMs: Stats;
  /** The limits of the runs: above anything the runs hold at once, so they never bind. */
  limits: Limits;
  /** A task claimed twice across claimers: must be 0. */
  duplicates: number;
}

const PROJECTS = 5;
const TOKENS = 3;
/** Never binding (each claimer finishes what it claimed before claiming again, so at most
 * claimers × batch run at once): the figure is the claim path itself, not how limits throttle it.
 * Finite because a limit is slot rows (`claim_slots`), made on first need. */
const LIMITS: Limits = { maxConcurrent: 1000, perProject: 1000, perToken: 1000 };
/** Claimers × batch size: the scheduler's own batch with 1, 2 and 4 claimers, and one task per
 * call (what the scheduler did before it claimed in batches) for comparison. */
const RUNS: [number, number][] = [
  [1, 1],
  [1, CLAIM_BATCH],
  [2, CLAIM_BATCH],
  [4, CLAIM_BATCH],
];

/**
 * claimBatch (the scheduler's claim step: running counts, each project's best queued tasks, the
 * fair-share plan, the rows locked, a slot of each limit per task, the state transitions with
 * their history and attempt rows) against a queue of `queued` tasks, with 1, 2 and 4 claimers
 * racing. Each run starts from the same full queue and stops after
 * `maxClaims` or `maxSeconds`, so the queue stays deep (the pick's cost grows with it). Runs on its
 * own database in the bench's Postgres: no control plane is reading that queue.
 */
export async function runClaims(opts: {
  pgUrl: string;
  queued: number;
  maxClaims: number;
  maxSeconds: number;
  signal: AbortSignal;
  progress: (msg: string) => void;
}): Promise<ClaimResult> {
  const url = await createDatabase(opts.pgUrl, "bench_claims");
  const db = createPool(url, 8);
  try {
    await migrate(db, createLogger("silent"));
    const ts = new TokenService(db);
    await ts.ensureDefaultOrg();
    const tokens: string[] = [];
    for (let i = 0; i < TOKENS; i++)
      tokens.push((await ts.create(DEFAULT_ORG, `bench-${i}`, "member")).info.id);
    const projects = Array.from({ length: PROJECTS }, (_, i) => `prj_bench${i}`);
    for (const p of projects)
      await db.query("insert into projects (id, org_id, repo) values ($1, $2, $3)", [
        p,
        DEFAULT_ORG,
        `/r/${p}`,
      ]);

    const selectOneMs = stats(await time(500, () => db.query("select 1")));
    const runs: ClaimRun[] = [];
    const seen = new Set<string>();
    let duplicates = 0;
    for (const [claimers, batch] of RUNS) {
      opts.signal.throwIfAborted();
      await fill(db, opts.queued, projects, tokens);
      seen.clear();
      const claimMs: number[] = [];
      const finishMs: number[] = [];
      const deadline = performance.now() + opts.maxSeconds * 1000;
      let claims = 0;
      let calls = 0;
      const t0 = performance.now();
      const loop = async (k: number) => {
        while (claims < opts.maxClaims && performance.now() < deadline && !opts.signal.aborted) {
          const a = performance.now();
          const cs = await claimBatch(db, `bench-${k}`, LIMITS, 60_000, batch);
          const b = performance.now();
          claimMs.push(b - a);
          if (cs.length === 0) return;
          claims += cs.length;
          calls++;
          for (const c of cs) {
            if (seen.has(c.task.id)) duplicates++;
            seen.add(c.task.id);
          }
          // One round trip: close the attempts and finish the tasks, so they no longer count as running.
          await db.query(
            `with a as (update task_attempts set finished_at = now(), outcome = 'succeeded'
                        where task_id = any($1::text[]) and finished_at is null)
             update tasks set state = 'succeeded', finished_at = now(), updated_at = now()
             where id = any($1::text[])`,
            [cs.map((c) => c.task.id)],
          );
          finishMs.push(performance.now() - b);
        }
      };
      await Promise.all(Array.from({ length: claimers }, (_, k) => loop(k)));
      const seconds = (performance.now() - t0) / 1000;
      const queuedAfter = Number(
        (await db.query("select count(*) from tasks where state = 'queued'")).rows[0].count,
      );
      runs.push({
        claimers,
        batch,
        perCall: calls ? Math.round((claims / calls) * 10) / 10 : 0,
        claims,
        seconds: Math.round(seconds * 100) / 100,
        tasksPerS: Math.round(claims / seconds),
        claimMs: stats(claimMs),
        finishMs: stats(finishMs),
        queuedAfter,
      });
      opts.progress(`claims: ${claimers} claimer(s), batch ${batch}: ${claims} in ${seconds.toFixed(1)} s`);
    }
    return {
      queued: opts.queued,
      projects: PROJECTS,
      tokens: TOKENS,
      runs,
      selectOneMs,
      limits: LIMITS,
      duplicates,
    };
  } finally {
    await db.end();
  }
}

/**
 * Empties the queue and inserts `n` queued tasks in one statement: projects and tokens round robin
 * (at different strides so every pair occurs), priorities -1/0/1 mixed, creation times 1 ms apart
 * so "oldest first" is well defined. ANALYZE so the planner sees the queue it is about to serve.
 */
async function fill(db: Db, n: number, projects: string[], tokens: string[]): Promise<void> {
  await db.query("truncate task_history, task_attempts, tasks cascade");
  await db.query(
    `insert into tasks (id, org_id, project_id, token_id, repo, base_ref, prompt, model, permission,
       priority, timeout_ms, max_attempts, state, created_at)
     select 'tsk_bench' || lpad(g::text, 8, '0'), $1, ($2::text[])[1 + g % cardinality($2::text[])],
       ($3::text[])[1 + (g / 7) % cardinality($3::text[])], '/r', 'HEAD', 'p', 'scripted/scripted-1',
       '"allow"', (g * 7919) % 3 - 1, 60000, 3, 'queued',
       now() - make_interval(secs => ($4 - g) / 1000.0)
     from generate_series(1, $4) g`,
    [DEFAULT_ORG, projects, tokens, n],
  );
  await db.query("analyze tasks");
}
