import type { SessionStatus } from "@flotilla/contracts";

/**
 * The groups of session statuses the code asks about, in one place (as TypeScript lists and as SQL
 * `in (...)` lists built from them), so a new status is added to every question at once.
 */

/** A turn is running (or blocked on a person). */
export const IN_TURN: SessionStatus[] = ["running", "waiting_permission"];
/** A harness serves it now or is being made ready for it. */
export const WORKING: SessionStatus[] = ["provisioning", ...IN_TURN];
/** Its workspace counts against its shard's cap: working, or waiting in line for a harness. */
export const PLACED: SessionStatus[] = ["queued", ...WORKING];

/** `('a', 'b')`, for `status in ...`. The lists are constants of ours, never input. */
export const sqlIn = (xs: readonly string[]) => `(${xs.map((x) => `'${x}'`).join(", ")})`;
export const IN_TURN_SQL = sqlIn(IN_TURN);
export const WORKING_SQL = sqlIn(WORKING);
export const PLACED_SQL = sqlIn(PLACED);
