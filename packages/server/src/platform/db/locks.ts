/**
 * Every Postgres advisory lock key Flotilla takes, in one place, so no two uses collide. All are
 * transaction-scoped (`pg_advisory_xact_lock`): released at commit or rollback, never leaked.
 */
export const LOCKS = {
  /** Migrations: replicas booting at once apply each exactly once. */
  migrate: 7_700_001,
  /** The first admin token: two replicas booting at once make one. */
  bootstrapAdmin: 7_700_002,
  // 7_700_003 was the task claim lock, until claims took slot rows instead (016_claim_slots.sql).
} as const;
