import type { SessionStatus } from "@flotilla/contracts";

/** A turn is in flight: the agent is working, or waiting for a permission answer. */
export const IN_TURN: readonly SessionStatus[] = ["running", "waiting_permission"];
/** The session is using its harness: being provisioned, or in a turn. */
export const ACTIVE: readonly SessionStatus[] = ["provisioning", ...IN_TURN];

const sqlList = (xs: readonly string[]) => `(${xs.map((x) => `'${x}'`).join(", ")})`;
/** For `status in ${IN_TURN_SQL}`: `('running', 'waiting_permission')`. */
export const IN_TURN_SQL = sqlList(IN_TURN);
/** For `status in ${ACTIVE_SQL}`: `('provisioning', 'running', 'waiting_permission')`. */
export const ACTIVE_SQL = sqlList(ACTIVE);
