import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../logger.ts";
import { LOCKS } from "./locks.ts";
import { type Db, withTx } from "./pool.ts";

const DIR = new URL("./migrations/", import.meta.url).pathname;
// Any constant; every replica takes the same lock so each migration is applied exactly once.

/**
 * Forward-only, versioned migrations (`NNN_name.sql`). The transaction-scoped advisory lock makes
 * replicas booting at once against one database wait for each other instead of racing.
 * `through` stops after that version (tests of a migration set up the data it rewrites).
 */
export async function migrate(db: Db, log: Logger, opts: { through?: number } = {}): Promise<number> {
  const files = readdirSync(DIR)
    .filter((f) => /^\d{3}_.+\.sql$/.test(f))
    .filter((f) => opts.through === undefined || Number(f.slice(0, 3)) <= opts.through)
    .sort();
  return await withTx(db, async (tx) => {
    await tx.query("select pg_advisory_xact_lock($1)", [LOCKS.migrate]);
    await tx.query(
      "create table if not exists schema_migrations (version int primary key, name text not null, applied_at timestamptz not null default now())",
    );
    const done = new Set(
      (await tx.query("select version from schema_migrations")).rows.map((r) => r.version),
    );
    let applied = 0;
    for (const f of files) {
      const version = Number(f.slice(0, 3));
      if (done.has(version)) continue;
      await tx.query(readFileSync(join(DIR, f), "utf8"));
      await tx.query("insert into schema_migrations (version, name) values ($1, $2)", [version, f]);
      log.info({ migration: f }, "applied migration");
      applied++;
    }
    return applied;
  });
}
