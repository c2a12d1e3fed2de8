import { type Db, type Tx, withTx } from "../platform/db/pool.ts";
import { type TaskTransition, taskFromRow } from "./tasks.ts";

// biome-ignore lint/suspicious/noExplicitAny: database rows
type Row = Record<string, any>;

export interface Limits {
  maxConcurrent: number;
  perProject: number;
  perToken: number;
}

export interface Claim {
  task: Row;
  n: number;
  transition: TaskTransition;
  /** How long the task waited to be claimed, from its `available_at` (database clock, seconds). */
  waitedS: number;
}

/** A queued task as the planner sees it. */
export interface Candidate {
  id: string;
  project: string;
  token: string;
  priority: number;
  createdAt: number;
}

/** Running tasks: in all, per project, per token. */
export interface Counts {
  total: number;
  project: Map<string, number>;
  token: Map<string, number>;
}

const ALL = "all";
const projectScope = (id: string) => `project:${id}`;
const tokenScope = (id: string) => `token:${id}`;

const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

/**
 * The order in which `max` single claims, one after another, would take tasks: each takes the
 * highest priority, then the project with the fewest running (fair share), then the oldest, of the
 * tasks whose project and token are below their limits; each claim counts for the next. Pure.
 *
 * `queues` holds each project's queued tasks best first (priority, then age); `truncated` names the
 * projects that have more than were read: when all of such a project's read tasks are blocked by
 * their tokens, an eligible one may lie further down, so the plan stops there rather than take a
 * task out of order. Planned tasks are taken off `queues` and counted in `counts`.
 */
export function planClaims(
  queues: Map<string, Candidate[]>,
  truncated: Set<string>,
  counts: Counts,
  limits: Limits,
  max: number,
): Candidate[] {
  const plan: Candidate[] = [];
  while (plan.length < max && counts.total < limits.maxConcurrent) {
    let best: { c: Candidate; running: number; at: number } | undefined;
    for (const [project, list] of queues) {
      const running = counts.project.get(project) ?? 0;
      if (running >= limits.perProject) continue;
      const at = list.findIndex((c) => (counts.token.get(c.token) ?? 0) < limits.perToken);
      if (at < 0) {
        if (truncated.has(project)) return plan;
        continue;
      }
      const c = list[at]!;
      if (
        !best ||
        c.priority > best.c.priority ||
        (c.priority === best.c.priority &&
          (running < best.running ||
            (running === best.running &&
              (c.createdAt < best.c.createdAt || (c.createdAt === best.c.createdAt && c.id < best.c.id)))))
      )
        best = { c, running, at };
    }
    if (!best) break;
    queues.get(best.c.project)!.splice(best.at, 1);
    plan.push(best.c);
    counts.total++;
    bump(counts.project, best.c.project);
    bump(counts.token, best.c.token);
  }
  return plan;
}

/**
 * Claims up to `max` queued tasks for this replica, in the order `planClaims` gives, and starts an
 * attempt of each, in one transaction and without a global lock:
 *
 * 1. the running counts and each project's best queued tasks (two reads);
 * 2. the plan; its tasks locked with SKIP LOCKED. A task another claimer (or a cancel) holds is
 *    passed over and counted as if claimed, so racing claimers spread over projects instead of
 *    all planning the same one; the plan is then made again for what is left;
 * 3. a free slot of each limit's scope per task (`claim_slots`, SKIP LOCKED): the slots, not the
 *    counts read in 1, are what make the limits exact across replicas; a task that finds no slot
 *    is not claimed;
 * 4. one statement moves the tasks to `running`, writes their history and attempt rows, and
 *    binds the slots to them.
 *
 * Attempt start times use clock_timestamp(), not now(): the slot this claim took may have been
 * freed by an attempt that ended after this transaction began. So does each claim's wait
 * (`waitedS`, from the task's `available_at`), read in the same statement.
 */
export async function claimBatch(
  db: Db,
  replica: string,
  limits: Limits,
  leaseMs: number,
  max: number,
): Promise<Claim[]> {
  if (max < 1) return [];
  return withTx(db, async (tx) => {
    // Each project's best few: `max` at most go into one batch, and as many again for tasks that
    // others hold and the plan passes over. created_at in microseconds: the plan must order by the
    // same instant the database does. The running counts and the candidates are read by one
    // statement, so from one snapshot: read apart, a claim committed in between could be missing
    // from the counts and its task from the candidates, and the plan would give that project a
    // second task as if it had none running (CI saw a flood starve the lone project that way).
    const fetched = 2 * max + 2;
    const { rows: read } = await tx.query(
      `with run as (
         select project_id, token_id, count(*)::int as n from tasks where state = 'running'
         group by project_id, token_id
       ), full_projects as (
         select project_id from run group by project_id having sum(n) >= $1
       ), full_tokens as (
         select token_id from run group by token_id having sum(n) >= $2
       )
       select 'running' as kind, project_id, token_id, n, null::text as id, null::int as priority,
              null::bigint as created_us
       from run
       union all
       select 'queued', t.project_id, t.token_id, null, t.id, t.priority,
              (extract(epoch from t.created_at) * 1000000)::bigint
       from projects p
         cross join lateral (
           select t.id, t.project_id, t.token_id, t.priority, t.created_at from tasks t
           where t.project_id = p.id and t.state = 'queued' and t.available_at <= now()
             and not exists (select 1 from full_tokens f where f.token_id = t.token_id)
           order by t.priority desc, t.created_at asc, t.id asc
           limit $3
         ) t
       where not exists (select 1 from full_projects f where f.project_id = p.id)`,
      [limits.perProject, limits.perToken, fetched],
    );
    const counts: Counts = { total: 0, project: new Map(), token: new Map() };
    for (const r of read) {
      if (r.kind !== "running") continue;
      counts.total += r.n;
      counts.project.set(r.project_id, (counts.project.get(r.project_id) ?? 0) + r.n);
      counts.token.set(r.token_id, (counts.token.get(r.token_id) ?? 0) + r.n);
    }
    if (counts.total >= limits.maxConcurrent) return [];
    const rows = read.filter((r) => r.kind === "queued");
    const queues = new Map<string, Candidate[]>();
    for (const r of rows) {
      const c: Candidate = {
        id: r.id,
        project: r.project_id,
        token: r.token_id,
        priority: r.priority,
        createdAt: Number(r.created_us),
      };
      const q = queues.get(c.project);
      if (q) q.push(c);
      else queues.set(c.project, [c]);
    }
    const truncated = new Set<string>();
    for (const [p, q] of queues) {
      q.sort((a, b) => b.priority - a.priority || a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
      if (q.length >= fetched) truncated.add(p);
    }

    // Plan, lock, and plan again around what others hold.
    const locked: Candidate[] = [];
    for (let round = 0; round < 4 && locked.length < max; round++) {
      const plan = planClaims(queues, truncated, counts, limits, max - locked.length);
      if (plan.length === 0) break;
      const got = new Set(
        (
          await tx.query(
            "select id from tasks where id = any($1::text[]) and state = 'queued' for update skip locked",
            [plan.map((c) => c.id)],
          )
        ).rows.map((r) => r.id as string),
      );
      for (const c of plan) if (got.has(c.id)) locked.push(c);
      if (got.size === plan.length) break;
    }
    if (locked.length === 0) return [];

    const slots = await takeSlots(tx, locked, limits);
    const claimed: { c: Candidate; slots: [string, number][] }[] = [];
    for (const c of locked) {
      const scopes = [ALL, projectScope(c.project), tokenScope(c.token)];
      if (!scopes.every((s) => (slots.get(s)?.length ?? 0) > 0)) continue;
      claimed.push({ c, slots: scopes.map((s) => [s, slots.get(s)!.shift()!]) });
    }
    if (claimed.length === 0) return [];

    const bound = claimed.flatMap(({ c, slots }) => slots.map(([scope, idx]) => ({ scope, idx, id: c.id })));
    const done = await tx.query(
      `with upd as (
         update tasks t set state = 'running', attempts = t.attempts + 1, cancel_requested = false,
           session_id = null, updated_at = now()
         where t.id = any($1::text[]) and t.state = 'queued'
         returning t.*
       ), hist as (
         insert into task_history (task_id, from_state, to_state, reason)
         select id, 'queued', 'running', 'attempt ' || attempts || ' on ' || $2 from upd
       ), att as (
         insert into task_attempts (task_id, n, replica, started_at, lease_expires_at)
         select id, attempts, $2, clock_timestamp(), now() + make_interval(secs => $3::float / 1000) from upd
       ), slot as (
         update claim_slots s set task_id = v.task_id
         from unnest($4::text[], $5::int[], $6::text[]) as v(scope, idx, task_id)
         where s.scope = v.scope and s.idx = v.idx and v.task_id in (select id from upd)
       )
       select upd.*, greatest(0, extract(epoch from clock_timestamp() - upd.available_at))::float8 as waited_s
       from upd`,
      [
        claimed.map((x) => x.c.id),
        replica,
        leaseMs,
        bound.map((b) => b.scope),
        bound.map((b) => b.idx),
        bound.map((b) => b.id),
      ],
    );
    const byId = new Map(done.rows.map((r) => [r.id as string, r]));
    // In the plan's order, so the caller starts them best first.
    return claimed.flatMap(({ c }) => {
      const got = byId.get(c.id);
      if (!got) return [];
      const { waited_s, ...task } = got;
      const n = Number(task.attempts);
      const reason = `attempt ${n} on ${replica}`;
      return [
        {
          task,
          n,
          transition: { task: taskFromRow(task), from: "queued" as const, to: "running", reason },
          waitedS: Number(waited_s),
        },
      ];
    });
  });
}

/** One claim: the best task, or null. */
export async function claimNext(
  db: Db,
  replica: string,
  limits: Limits,
  leaseMs: number,
): Promise<Claim | null> {
  return (await claimBatch(db, replica, limits, leaseMs, 1))[0] ?? null;
}

/**
 * Free slots for the locked tasks: of each scope as many as its tasks need, at or below the
 * scope's limit, locked with SKIP LOCKED. A scope short of slots may never have had them made (a
 * new project or token, a raised limit): its missing rows are inserted, and those are ours.
 */
async function takeSlots(tx: Tx, tasks: Candidate[], limits: Limits): Promise<Map<string, number[]>> {
  const need = new Map<string, { n: number; limit: number }>();
  const add = (scope: string, limit: number) => {
    const x = need.get(scope);
    if (x) x.n++;
    else need.set(scope, { n: 1, limit });
  };
  for (const c of tasks) {
    add(ALL, limits.maxConcurrent);
    add(projectScope(c.project), limits.perProject);
    add(tokenScope(c.token), limits.perToken);
  }
  const scopes = [...need.keys()];
  const got = new Map<string, number[]>(scopes.map((s) => [s, []]));
  const missing = () => scopes.filter((s) => got.get(s)!.length < need.get(s)!.n);
  const free = async (which: string[]) => {
    const held = which.flatMap((s) => got.get(s)!.map((i) => `${s}#${i}`));
    const { rows } = await tx.query(
      `select w.scope, s.idx from unnest($1::text[], $2::int[], $3::int[]) as w(scope, need, lim)
         cross join lateral (
           select c.idx from claim_slots c
           where c.scope = w.scope and c.idx <= w.lim and c.task_id is null
             and not (c.scope || '#' || c.idx = any($4::text[]))
           order by c.idx limit w.need
           for update skip locked
         ) s`,
      [
        which,
        which.map((s) => need.get(s)!.n - got.get(s)!.length),
        which.map((s) => need.get(s)!.limit),
        held,
      ],
    );
    for (const r of rows) got.get(r.scope)!.push(r.idx);
  };
  await free(scopes);
  let short = missing();
  if (short.length === 0) return got;
  // Rows never made: insert them (the ones inserted are ours). A row another claimer is inserting
  // at the same moment makes this insert wait for it, and then it is there to take: look again.
  const made = await tx.query(
    `insert into claim_slots (scope, idx)
     select w.scope, g from unnest($1::text[], $2::int[]) as w(scope, lim), generate_series(1, w.lim) g
     on conflict do nothing
     returning scope, idx`,
    [short, short.map((s) => need.get(s)!.limit)],
  );
  for (const r of made.rows) {
    const list = got.get(r.scope)!;
    if (list.length < need.get(r.scope)!.n) list.push(r.idx);
  }
  short = missing();
  if (short.length > 0) await free(short);
  return got;
}
