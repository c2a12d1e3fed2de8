/**
 * Durations the control plane measures on its own paths, reported as they happen: the Prometheus
 * metrics (`metrics/prometheus.ts`) implement it. Optional wherever it is taken: services made
 * without a server (tests, benchmarks) pass none, and nothing is measured. Each call is one
 * observation of a number already at hand: no reads, no waiting.
 */
export interface Timings {
  /** A task was claimed, `seconds` after it became claimable (its `available_at`). */
  taskClaimed(seconds: number): void;
  /** A session's provisioning ended ready for its prompt, `seconds` after it began. */
  sessionProvisioned(runtime: string, seconds: number): void;
  /** A session's provisioning ended `failed`. */
  sessionProvisioningFailed(runtime: string): void;
  /** A harness event's log events were committed, `seconds` after the ingest received it. */
  eventStored(seconds: number): void;
  /** A stored event was written to a client's stream, `seconds` after its commit. */
  eventDelivered(seconds: number): void;
}
