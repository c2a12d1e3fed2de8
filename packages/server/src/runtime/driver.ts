/**
 * A runtime driver places harnesses. Local processes now; Docker and Kubernetes implement the same
 * contract. Drivers are small and hold no state that a restart would lose: everything needed to
 * find a harness again is in its HarnessRecord.
 */
export interface HarnessSpec {
  harnessId: string;
  /** The harness's working directory; requests name each workspace directory explicitly. */
  workspacePath: string;
  /** The state shard: OpenCode's data/config/state/cache dirs live here; its workspaces are bound to it for life. */
  stateDir: string;
  /** Where the driver keeps this harness's log and secrets. */
  runDir: string;
  /** Environment for the agent server: provider keys and OpenCode config. Never logged. */
  env: Record<string, string>;
  password: string;
  readyTimeoutMs: number;
  /** Called as soon as the process exists (before it is ready), so a crash of the control plane
   * during start-up still leaves a record that finds and stops it. */
  onSpawn?: (record: HarnessRecord) => Promise<void>;
}

export interface HarnessRecord {
  harnessId: string;
  pid: number | null;
  pidStart: string | null;
  url: string | null;
  runDir: string;
}

export interface StartedHarness extends HarnessRecord {
  url: string;
  /** Resolves when the harness process exits, for drivers that can see it. */
  exited: Promise<{ code: number | null; signal: string | null }>;
}

export interface RuntimeDriver {
  readonly name: string;
  /** Starts a harness and resolves once its server answers a health check. */
  start(spec: HarnessSpec): Promise<StartedHarness>;
  /** Graceful stop, then kill after graceMs. Safe on a harness that is already gone. */
  stop(record: HarnessRecord, graceMs: number): Promise<void>;
  /** Whether the harness described by record is still the same running process. */
  inspect(record: HarnessRecord): Promise<"running" | "gone">;
  /** The tail of the harness's own log. */
  logs(record: HarnessRecord, maxBytes?: number): Promise<string>;
  /** Resident memory of the harness and everything it started (its process group). */
  stats(record: HarnessRecord): Promise<{ rssBytes: number }>;
}

export class HarnessStartError extends Error {
  constructor(
    message: string,
    readonly logTail: string,
  ) {
    super(message);
    this.name = "HarnessStartError";
  }
}
