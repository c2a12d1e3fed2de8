/** Exponential back-off with jitter: base·2^(n−1), capped, then scaled by a random 50–100 %. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  const raw = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(raw * (0.5 + random() * 0.5));
}

/** A `random` for backoffMs that takes out the jitter: plain doubling up to the cap. */
export const NO_JITTER = () => 1;
