import { asFailure, type Overview, type OverviewFailure } from "@flotilla/contracts";
import type { Queryable } from "../platform/db/pool.ts";

const FAILED_TASK = "('failed', 'dead', 'timed_out')";
// A session "failed" for the dashboard when it could not start, lost its turn, or its last turn
// ended in an error (status is then idle, but `error` stays set until the next turn starts). The
// same predicate as the partial index sessions_failing (migration 009), so the planner can use it.
const FAILING_SESSION =
  "s.deleted_at is null and (s.error is not null or s.status in ('failed', 'interrupted'))";
const RECENT = 10;

/** 00:00 UTC of the day `now` falls in. */
export function startOfUtcDay(now: Date): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
}

const firstLine = (s: string) => {
  const line = s.trim().split("\n", 1)[0] ?? "";
  return line.length > 120 ? `${line.slice(0, 119)}…` : line;
};

/**
 * One reading of an organisation's fleet. Each query is bounded by an index: live states are small
 * sets, "today" reads start from a time index (usage events, finished tasks), and recent failures
 * come from partial indexes over failures only, so the cost does not grow with history.
 */
export async function readOverview(
  db: Queryable,
  orgId: string,
  now = new Date(),
): Promise<Omit<Overview, "leftovers">> {
  const since = startOfUtcDay(now);
  const [sessions, tasks, harnesses, usage, failedTasks, failedSessions] = await Promise.all([
    db.query<{ status: string; n: number }>(
      `select status, count(*)::int as n from sessions s
       where s.org_id = $1 and s.deleted_at is null group by status`,
      [orgId],
    ),
    // queued and running now (one arm each, so each uses its partial index); final states only for
    // tasks that ended today. A retried task keeps its old finished_at, hence the state check.
    db.query<{ state: string; n: number; ready: number }>(
      `select 'queued' as state, count(*)::int as n,
         (count(*) filter (where available_at <= $3))::int as ready
       from tasks where state = 'queued' and org_id = $1
       union all
       select 'running', count(*)::int, 0 from tasks where state = 'running' and org_id = $1
       union all
       (select state, count(*)::int, 0 from tasks
        where org_id = $1 and finished_at >= $2 and state not in ('queued', 'running')
        group by state)`,
      [orgId, since, now],
    ),
    // Warm harnesses (shard not yet given to an org) are capacity every org draws on: shown too.
    db.query<{
      id: string;
      state: "starting" | "ready" | "stopping";
      rss_bytes: number | null;
      active_sessions: number;
      project_id: string | null;
      repo: string | null;
      started_at: Date;
    }>(
      `select h.id, h.state, h.rss_bytes, h.active_sessions, sh.project_id, p.repo, h.started_at
       from harnesses h join shards sh on sh.id = h.shard_id left join projects p on p.id = sh.project_id
       where h.state in ('starting', 'ready', 'stopping') and (sh.org_id = $1 or sh.org_id is null)
       order by h.started_at desc`,
      [orgId],
    ),
    db.query<{
      input: number;
      output: number;
      reasoning: number;
      cache_read: number;
      cache_write: number;
      cost: number;
      messages: number;
    }>(
      `select coalesce(sum((e.data->'tokens'->>'input')::float), 0) as input,
         coalesce(sum((e.data->'tokens'->>'output')::float), 0) as output,
         coalesce(sum((e.data->'tokens'->>'reasoning')::float), 0) as reasoning,
         coalesce(sum((e.data->'tokens'->>'cacheRead')::float), 0) as cache_read,
         coalesce(sum((e.data->'tokens'->>'cacheWrite')::float), 0) as cache_write,
         coalesce(sum((e.data->>'cost')::float), 0) as cost,
         count(*)::int as messages
       from events e join sessions s on s.id = e.session_id
       where e.type = 'usage' and e.at >= $2 and s.org_id = $1`,
      [orgId, since],
    ),
    db.query<{
      id: string;
      state: string;
      prompt: string;
      error: unknown;
      at: Date;
    }>(
      `select id, state, prompt, error, finished_at as at
       from tasks where org_id = $1 and state in ${FAILED_TASK} and finished_at is not null
       order by finished_at desc limit ${RECENT}`,
      [orgId],
    ),
    // The sort reads the whole failing set anyway (updated_at changes on every event, so it is
    // deliberately not indexed: that would cost every append its HOT update); the window count
    // over the same rows is then free.
    db.query<{ id: string; status: string; title: string; error: unknown; at: Date; today: number }>(
      `select s.id, s.status, s.title, s.error, s.updated_at as at,
         (count(*) filter (where s.updated_at >= $2) over ())::int as today
       from sessions s where s.org_id = $1 and ${FAILING_SESSION}
       order by s.updated_at desc limit ${RECENT}`,
      [orgId, since],
    ),
  ]);
  const taskCounts = countBy(
    tasks.rows.map((r) => [r.state, r.n]),
    {
      queued: 0,
      running: 0,
      succeeded: 0,
      failed: 0,
      cancelled: 0,
      timed_out: 0,
      dead: 0,
    },
  );
  const queued = tasks.rows.find((r) => r.state === "queued");
  const u = usage.rows[0]!;
  return {
    at: now.toISOString(),
    since: since.toISOString(),
    sessions: countBy(
      sessions.rows.map((r) => [r.status, r.n]),
      {
        queued: 0,
        provisioning: 0,
        idle: 0,
        running: 0,
        waiting_permission: 0,
        interrupted: 0,
        failed: 0,
      },
    ),
    tasks: taskCounts,
    queue: { depth: queued?.n ?? 0, ready: queued?.ready ?? 0 },
    harnesses: {
      items: harnesses.rows.map((h) => ({
        id: h.id,
        state: h.state,
        rssBytes: h.rss_bytes,
        activeSessions: h.active_sessions,
        projectId: h.project_id,
        repo: h.repo,
        startedAt: h.started_at.toISOString(),
      })),
      totalRssBytes: harnesses.rows.reduce((a, h) => a + (h.rss_bytes ?? 0), 0),
    },
    today: {
      tokens: {
        input: u.input,
        output: u.output,
        reasoning: u.reasoning,
        cacheRead: u.cache_read,
        cacheWrite: u.cache_write,
      },
      cost: u.cost,
      messages: u.messages,
      failedTasks: taskCounts.failed + taskCounts.dead + taskCounts.timed_out,
      failedSessions: failedSessions.rows[0]?.today ?? 0,
    },
    failures: [
      ...failedTasks.rows.map(
        (r): OverviewFailure => ({
          kind: "task",
          id: r.id,
          title: firstLine(r.prompt),
          state: r.state,
          error: asFailure(r.error),
          at: r.at.toISOString(),
        }),
      ),
      ...failedSessions.rows.map(
        (r): OverviewFailure => ({
          kind: "session",
          id: r.id,
          title: r.title,
          state: r.status,
          error: asFailure(r.error),
          at: r.at.toISOString(),
        }),
      ),
    ]
      .sort((a, b) => b.at.localeCompare(a.at))
      .slice(0, RECENT),
  };
}

/** Fills the known keys from (key, count) rows; keys outside the schema (e.g. "deleted") are dropped. */
function countBy<K extends string>(rows: [string, number][], zero: Record<K, number>): Record<K, number> {
  const out = { ...zero };
  for (const [k, n] of rows) if (k in out) out[k as K] = n;
  return out;
}
