/**
 * Every Postgres advisory lock key Flotilla takes, in one place, so no two uses collide. All are
 * transaction-scoped (`pg_advisory_xact_lock`): released at commit or rollback, never leaked.
 */
export const LOCKS = {
  /** Migrations: replicas booting at once apply each exactly once. */
  migrate: 7_700_001,
  /** The first admin token: two replicas booting at once make one. */
  bootstrapAdmin: 7_700_002,
  /** Task claims: the running counts a claim reads are exact across replicas. */
  claim: 7_700_003,
} as const;
