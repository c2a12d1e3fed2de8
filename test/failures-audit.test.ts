import { ErrorInfo } from "@flotilla/contracts";
import pg from "pg";
import { describe, expect, inject, it } from "vitest";

// Runs after every other test file (vitest.config.ts: the "audit" project, last in order), over
// the databases all of them left in the run's one Postgres: every failure the suite's scenarios
// stored (failed starts, lost harnesses, aborts, timeouts, failed verifies, provider errors,
// retries, dead tasks) must be a member of the closed list, in the shape the API describes.
// The compiler checks the places that make failures; this checks what they really stored.

const FAILURES_SQL = `
  select 'sessions.error' as place, id as ref, error as e from sessions where error is not null
  union all
  select 'tasks.error', id, error from tasks where error is not null
  union all
  select 'task_attempts.error', task_id || '#' || n, error from task_attempts where error is not null
  union all
  select 'events(' || type || ')', session_id || '#' || seq,
         case when type = 'error' then data else data->'error' end
    from events
   where type = 'error' or (type in ('session.status', 'turn.finished') and data ? 'error')`;

async function databases(base: string): Promise<string[]> {
  const c = new pg.Client({ connectionString: base });
  await c.connect();
  try {
    const { rows } = await c.query<{ datname: string }>(
      "select datname from pg_database where datname like 't\\_%' order by datname",
    );
    return rows.map((r) => r.datname);
  } finally {
    await c.end();
  }
}

describe("every failure the suite stored", () => {
  it("is a member of the failure union, with retriable", async (ctx) => {
    const base = inject("pgUrl");
    // Read when it runs, after the other files (not when it is collected, which is before them).
    const names = await databases(base);
    // Alone (no other file ran before it) there is nothing to audit: it says so rather than pass.
    if (names.length < 3) ctx.skip();
    const bad: string[] = [];
    const kinds = new Map<string, number>();
    let total = 0;
    for (const name of names) {
      const u = new URL(base);
      u.pathname = `/${name}`;
      const c = new pg.Client({ connectionString: u.toString() });
      await c.connect();
      try {
        // A database some test made for another purpose (no Flotilla schema) has nothing to say.
        const { rows: has } = await c.query("select to_regclass('public.events') is not null as ok");
        if (!has[0].ok) continue;
        const { rows } = await c.query<{ place: string; ref: string; e: unknown }>(FAILURES_SQL);
        for (const r of rows) {
          total++;
          const parsed = ErrorInfo.safeParse(r.e);
          if (!parsed.success) bad.push(`${name} ${r.place} ${r.ref}: ${JSON.stringify(r.e)}`);
          else kinds.set(parsed.data.name, (kinds.get(parsed.data.name) ?? 0) + 1);
        }
      } finally {
        await c.end();
      }
    }
    console.log(
      `audited ${total} stored failures in ${names.length} databases: ${[...kinds]
        .sort((a, b) => b[1] - a[1])
        .map(([k, n]) => `${k} ${n}`)
        .join(", ")}`,
    );
    expect(bad).toEqual([]);
    // The failing scenarios really ran and stored failures.
    expect(total).toBeGreaterThan(0);
  });
});
