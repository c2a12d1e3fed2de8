/**
 * A runtime driver is the only road to the machine where an agent runs: it places harnesses, and
 * every command (git, verify, diffs) and terminal that touches a workspace goes through it, so the
 * same boundary holds for all of them. `sandbox` (bubblewrap, the default) and `local` (plain child
 * processes, unsafe) now; Docker and Kubernetes implement the same contract. Drivers are small and
 * hold no state that a restart would lose: everything needed to find a harness again is in its
 * HarnessRecord. Every driver passes the shared contract suite (test/driver-contract.ts).
 */

/** Which way out of a sandbox an agent has (per project; default `allowlist`). */
export type NetworkPolicy = "none" | "allowlist" | "open";

/** The storage a harness is given: a state shard, holding the agent's state and its workspaces. */
export interface ShardStorage {
  id: string;
  dir: string;
}

export interface HarnessSpec {
  harnessId: string;
  shard: ShardStorage;
  /** Where the driver keeps this harness's log and secrets (never visible to the harness). */
  runDir: string;
  /** Environment for the agent server: OpenCode config and keys. Never logged. */
  env: Record<string, string>;
  password: string;
  readyTimeoutMs: number;
  network: NetworkPolicy;
  /** Endpoints the agent server may reach under `allowlist` (the model endpoints), as URLs. */
  egress: string[];
  /** Called as soon as the process exists (before it is ready), so a crash of the control plane
   * during start-up still leaves a record that finds and stops it. */
  onSpawn?: (record: HarnessRecord) => Promise<void>;
}

/** JSON the driver understands and nobody else reads (a pid and its start time, a container id). */
export type DriverRef = Record<string, string | number | null>;

export interface HarnessRecord {
  harnessId: string;
  /** The driver that placed it: the registry finds it again by this name after a restart. */
  driver: string;
  ref: DriverRef;
  /** Base URL of the agent server's API as the control plane reaches it. */
  endpoint: string | null;
  runDir: string;
}

export interface StartedHarness extends HarnessRecord {
  endpoint: string;
  /** Resolves when the harness process exits, for drivers that can see it. */
  exited: Promise<{ code: number | null; signal: string | null }>;
}

export interface ExecSpec {
  shard: ShardStorage;
  /** A directory inside the shard (a workspace). */
  cwd: string;
  command: string[];
  /** Added to the driver's minimal environment; nothing is inherited from the control plane. */
  env?: Record<string, string>;
  timeoutMs: number;
  stdin?: string;
  onOutput?: (chunk: string, stream: "stdout" | "stderr") => void;
  /** Kept per stream (the tail); default 4 MiB. */
  maxOutputBytes?: number;
  network?: NetworkPolicy;
}

export interface ExecResult {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

export interface AttachSpec {
  shard: ShardStorage;
  cwd: string;
  command: string[];
  env?: Record<string, string>;
  cols: number;
  rows: number;
  network?: NetworkPolicy;
}

/** A PTY running in a workspace. */
export interface PtyProcess {
  onData(cb: (data: string) => void): void;
  onExit(cb: (e: { exitCode: number }) => void): void;
  write(data: string): void;
  resize(cols: number, rows: number): void;
  kill(): void;
}

export interface RuntimeDriver {
  readonly name: string;
  /** False only for `local`: then an agent can reach everything the control plane can. */
  readonly isolated: boolean;
  /** Makes the shard's storage ready for its harness, and hands `trees` placed in it (new
   * workspaces) to the user the agent runs as. Idempotent. */
  provision(shard: ShardStorage, trees?: string[]): Promise<void>;
  /** Starts a harness and resolves once its server answers a health check. */
  start(spec: HarnessSpec): Promise<StartedHarness>;
  /** Graceful stop, then kill after graceMs. Safe on a harness that is already gone. */
  stop(record: HarnessRecord, graceMs: number): Promise<void>;
  /** Whether the harness described by record is still the same running process. */
  inspect(record: HarnessRecord): Promise<"running" | "gone">;
  /** The tail of the harness's own log. */
  logs(record: HarnessRecord, maxBytes?: number): Promise<string>;
  /** Resident memory of the harness and everything it started. */
  stats(record: HarnessRecord): Promise<{ rssBytes: number }>;
  /** A command to its end inside the shard's boundary, with its own environment and a deadline. */
  exec(spec: ExecSpec): Promise<ExecResult>;
  /** A PTY inside the shard's boundary (terminals). */
  attach(spec: AttachSpec): PtyProcess;
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

/** The drivers this control plane can use, by name; a harness record names its own. */
export class DriverRegistry {
  private readonly drivers = new Map<string, RuntimeDriver>();

  constructor(
    drivers: RuntimeDriver[],
    readonly defaultName: string,
  ) {
    for (const d of drivers) this.drivers.set(d.name, d);
  }

  get(name: string): RuntimeDriver {
    const d = this.drivers.get(name);
    if (!d) throw new Error(`no runtime driver ${JSON.stringify(name)} on this control plane`);
    return d;
  }

  has(name: string): boolean {
    return this.drivers.has(name);
  }

  names(): string[] {
    return [...this.drivers.keys()];
  }
}
