import { performance } from "node:perf_hooks";
import { createLogger } from "@flotilla/server";
import { DEFAULT_ORG, TokenService } from "../packages/server/src/identity/tokens.ts";
import { CLAIM_LOCK } from "../packages/server/src/platform/db/locks.ts";
import { migrate } from "../packages/server/src/platform/db/migrate.ts";
import { createPool, type Db } from "../packages/server/src/platform/db/pool.ts";
import { claimNext, type Limits } from "../packages/server/src/tasks/scheduler.ts";
import { createDatabase } from "./boot.ts";
import { type Stats, stats, time } from "./support.ts";

export interface ClaimRun {
  claimers: number;
  /** Tasks claimed (and then finished) in the run. */
  claims: number;
  seconds: number;
  tasksPerS: number;
  /** One claimNext call, as its caller waits for it (includes waiting on the other claimer's lock). */
  claimMs: Stats;
  /** Marking the claimed task succeeded (one statement), which the loop does between claims. */
  finishMs: Stats;
  /** Queued tasks when the run ended. */
  queuedAfter: number;
}

export interface ClaimResult {
  queued: number;
  projects: number;
  tokens: number;
  runs: ClaimRun[];
  /** Baselines on the same pool: a bare round trip, and an empty transaction taking the claim lock. */
  selectOneMs: Stats;
  lockTxMs: Stats;
  /** A task claimed twice across claimers: must be 0. */
  duplicates: number;
}

const PROJECTS = 5;
const TOKENS = 3;
/** Never binding: the figure is the claim path itself, not how limits throttle it. */
const LIMITS: Limits = { maxConcurrent: 1e9, perProject: 1e9, perToken: 1e9 };

/**
 * claimNext (the scheduler's claim step: advisory lock, running counts, the fair-share ordered
 * pick, the state transition and history row, the attempt row) against a queue of `queued` tasks,
 * with one and then two claimers racing. Each run starts from the same full queue and stops after
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
  const db = createPool(url, 4);
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
    const lockTxMs = stats(
      await time(500, async () => {
        const c = await db.connect();
        try {
          await c.query("begin");
          await c.query("select pg_advisory_xact_lock($1)", [CLAIM_LOCK]);
          await c.query("commit");
        } finally {
          c.release();
        }
      }),
    );

    const runs: ClaimRun[] = [];
    const seen = new Set<string>();
    let duplicates = 0;
    for (const claimers of [1, 2]) {
      opts.signal.throwIfAborted();
      await fill(db, opts.queued, projects, tokens);
      seen.clear();
      const claimMs: number[] = [];
      const finishMs: number[] = [];
      const deadline = performance.now() + opts.maxSeconds * 1000;
      let claims = 0;
      const t0 = performance.now();
      const loop = async (k: number) => {
        while (claims < opts.maxClaims && performance.now() < deadline && !opts.signal.aborted) {
          const a = performance.now();
          const c = await claimNext(db, `bench-${k}`, LIMITS, 60_000);
          const b = performance.now();
          claimMs.push(b - a);
          if (!c) return;
          claims++;
          if (seen.has(c.task.id)) duplicates++;
          seen.add(c.task.id);
          // One round trip: close the attempt and finish the task, so it no longer counts as running.
          await db.query(
            `with a as (update task_attempts set finished_at = now(), outcome = 'succeeded'
                        where task_id = $1 and finished_at is null)
             update tasks set state = 'succeeded', finished_at = now(), updated_at = now() where id = $1`,
            [c.task.id],
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
        claims,
        seconds: Math.round(seconds * 100) / 100,
        tasksPerS: Math.round(claims / seconds),
        claimMs: stats(claimMs),
        finishMs: stats(finishMs),
        queuedAfter,
      });
      opts.progress(`claims: ${claimers} claimer(s): ${claims} in ${seconds.toFixed(1)} s`);
    }
    return {
      queued: opts.queued,
      projects: PROJECTS,
      tokens: TOKENS,
      runs,
      selectOneMs,
      lockTxMs,
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
