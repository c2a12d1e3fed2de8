import pg from "pg";

export type Db = pg.Pool;
export type Tx = pg.PoolClient;
export type Queryable = pg.Pool | pg.PoolClient;

// bigint columns (seq) fit in a JS number for any realistic event count.
pg.types.setTypeParser(20, (v) => Number(v));

/**
 * `onError`: every error a connection of the pool meets (a query's or a connect's failure, a
 * connection that breaks while idle or in use), for the database's health state (./health.ts).
 */
export function createPool(url: string, max = 20, onError?: (err: unknown) => void): Db {
  const pool = new pg.Pool({
    connectionString: url,
    max,
    idleTimeoutMillis: 30_000,
    // A database that does not answer at all (a failover in progress, a dropped route) fails the
    // connect instead of hanging every caller behind it.
    connectionTimeoutMillis: 15_000,
  });
  const report = (err: unknown) => onError?.(err);
  // An idle client that loses its connection emits here; without a listener it would crash the process.
  pool.on("error", report);
  // A client in use that loses its connection emits 'error' too (its query fails with the same
  // error): without a listener of its own that crashes the process. This one stays for the
  // client's life; the caller sees the error through its query.
  pool.on("connect", (client) => client.on("error", report));
  if (onError) {
    // Refused connects and failed queries reach the health state as well: with no connection open
    // when the database went away, they are the first to know.
    const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
    const connect = pool.connect.bind(pool) as (...args: unknown[]) => unknown;
    const watched =
      (fn: (...args: unknown[]) => unknown) =>
      (...args: unknown[]) => {
        const r = fn(...args);
        if (r instanceof Promise) r.catch(report);
        return r;
      };
    Object.assign(pool, { query: watched(query), connect: watched(connect) });
  }
  return pool;
}

/** Runs fn in one transaction; rolls back on any throw. */
export async function withTx<T>(db: Db, fn: (tx: Tx) => Promise<T>): Promise<T> {
  const tx = await db.connect();
  try {
    await tx.query("begin");
    const out = await fn(tx);
    await tx.query("commit");
    return out;
  } catch (e) {
    // The error that matters is thrown on below; a failed rollback means the connection is gone,
    // and the transaction with it.
    await tx.query("rollback").catch(() => {});
    throw e;
  } finally {
    tx.release();
  }
}
