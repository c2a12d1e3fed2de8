// Keys of the transaction-scoped advisory locks (pg_advisory_xact_lock), one place for all of them
// so no two purposes share a key. Every replica takes the same key for the same purpose.

/** Applying migrations: replicas booting at once apply each migration exactly once. */
export const MIGRATE_LOCK = 7_700_001;
/** Making the first admin token: replicas booting at once do not both make one. */
export const BOOTSTRAP_ADMIN_LOCK = 7_700_002;
/** Claiming tasks: the running counts read under it are exact, so limits hold across replicas. */
export const CLAIM_LOCK = 7_700_003;
