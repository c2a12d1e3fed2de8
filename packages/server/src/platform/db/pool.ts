import pg from "pg";

export type Db = pg.Pool;
export type Tx = pg.PoolClient;
export type Queryable = pg.Pool | pg.PoolClient;

// bigint columns (seq) fit in a JS number for any realistic event count.
pg.types.setTypeParser(20, (v) => Number(v));

export function createPool(url: string, max = 20): Db {
  const pool = new pg.Pool({ connectionString: url, max, idleTimeoutMillis: 30_000 });
  // An idle client that loses its connection emits here; without a listener it would crash the process.
  pool.on("error", () => {});
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
