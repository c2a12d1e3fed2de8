import { dirname } from "node:path";

/**
 * What the host looks like, read once at start (hostFacts in host.ts) so the argument builder
 * below stays a pure function that unit tests can pin.
 */
export interface HostFacts {
  /** Top-level entries that are symlinks on this host (merged /usr: /bin -> usr/bin, ...). */
  rootSymlinks: Record<string, string>;
  /** Top-level system directories that exist as real directories (/bin on a non-merged host). */
  rootDirs: string[];
  /** Files and directories under /etc that hold secrets and exist here: hidden inside. */
  etcSecrets: string[];
  /** When the control plane runs as root: the unprivileged user the agent runs as. */
  dropTo: { uid: number; gid: number } | null;
}

/** Whether the sandbox has its own network namespace (loopback only, plus bridges) or the host's. */
export type SandboxNet = "isolated" | "host";

export interface SandboxSpec {
  /** Bound read-write at the same path inside: the shard (state and workspaces), the bridge dir. */
  rw: { src: string; dest: string }[];
  /** Bound read-only at the same path inside (the agent binary's directory, say). */
  ro: { src: string; dest: string }[];
  net: SandboxNet;
  cwd: string;
  /** The whole environment: nothing is inherited. */
  env: Record<string, string>;
  /** Kill the sandbox when the process that started bwrap dies (execs and terminals: yes; a
   * harness: no, it outlives a control-plane restart and is adopted). */
  dieWithParent: boolean;
  /** A session of its own (default): no TIOCSTI into a terminal it was started from. Off for a
   * terminal's shell, whose controlling terminal is the PTY made for it (job control needs it). */
  newSession?: boolean;
}

/** Secret-bearing paths under /etc that are masked when present. */
export const ETC_SECRETS = [
  "/etc/shadow",
  "/etc/shadow-",
  "/etc/gshadow",
  "/etc/gshadow-",
  "/etc/sudoers",
  "/etc/sudoers.d",
  "/etc/ssl/private",
  "/etc/ssh",
  "/etc/npmrc",
  "/etc/docker",
  "/etc/kubernetes",
  "/etc/postgresql",
  "/etc/security/opasswd",
  "/etc/machine-id",
];

const SYSTEM = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/** Every ancestor of `path` below `/`, outermost first. */
function ancestors(path: string): string[] {
  const out: string[] = [];
  for (let d = dirname(path); d !== "/" && d !== "."; d = dirname(d)) out.unshift(d);
  return out;
}

/**
 * The bubblewrap command line for one sandbox. The layout: a read-only system (/usr and the
 * top-level links into it, /etc with its secrets masked), a private /tmp, /dev and a /proc of the
 * sandbox's own PID namespace, and only the named trees of Flotilla's data. Nothing of
 * FLOTILLA_HOME, /root, /home, /var, /run or another workspace exists inside.
 *
 * Run as root, bwrap does the mounts with its privileges and the command then drops to the agent's
 * user through setpriv (no capabilities, no new privileges), so the agent is a real unprivileged
 * uid on the host, not root mapped into a user namespace. Run as an ordinary user, bwrap uses a
 * user namespace and the agent keeps that user's uid.
 */
export function bwrapArgs(host: HostFacts, spec: SandboxSpec, command: string[]): string[] {
  const a: string[] = [];
  // Namespaces: as root, no user namespace (the mounts need real root to reach 0700 parents such
  // as /root; the privilege is dropped before the command runs). As a user, a user namespace.
  if (host.dropTo) a.push("--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try");
  else a.push("--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try");
  if (spec.net === "isolated") a.push("--unshare-net");
  // A new session: the sandbox cannot push keystrokes into a terminal it was started from (TIOCSTI).
  if (spec.newSession !== false) a.push("--new-session");
  if (spec.dieWithParent) a.push("--die-with-parent");
  a.push("--ro-bind", "/usr", "/usr");
  for (const d of SYSTEM.slice(1)) {
    const link = host.rootSymlinks[d];
    if (link) a.push("--symlink", link, d);
    else if (host.rootDirs.includes(d)) a.push("--ro-bind", d, d);
  }
  a.push("--ro-bind", "/etc", "/etc");
  for (const s of host.etcSecrets) {
    // A directory is hidden under an empty tmpfs, a file under /dev/null.
    if (s.endsWith("/")) a.push("--tmpfs", s.slice(0, -1));
    else a.push("--ro-bind", "/dev/null", s);
  }
  a.push(
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--perms",
    "1777",
    "--tmpfs",
    "/tmp",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/var",
  );
  // bwrap makes missing parents of a mount point 0700 when it runs as root; the agent's user must
  // be able to walk down to its own trees, so the parents are made explicitly, 0755.
  const made = new Set<string>(["/usr", "/etc", "/proc", "/dev", "/tmp", "/run", "/var"]);
  const parents = (dest: string) => {
    for (const d of ancestors(dest)) {
      if (made.has(d) || SYSTEM.includes(d)) continue;
      made.add(d);
      a.push("--perms", "0755", "--dir", d);
    }
  };
  for (const m of spec.ro) {
    parents(m.dest);
    a.push("--ro-bind", m.src, m.dest);
    made.add(m.dest);
  }
  for (const m of spec.rw) {
    parents(m.dest);
    a.push("--bind", m.src, m.dest);
    made.add(m.dest);
  }
  a.push("--chdir", spec.cwd, "--clearenv");
  for (const [k, v] of Object.entries(spec.env)) a.push("--setenv", k, v);
  a.push("--");
  if (host.dropTo) {
    a.push(
      "setpriv",
      `--reuid=${host.dropTo.uid}`,
      `--regid=${host.dropTo.gid}`,
      "--clear-groups",
      "--no-new-privs",
      "--inh-caps=-all",
      "--bounding-set=-all",
      "--",
    );
  }
  a.push(...command);
  return a;
}

/** Single-quotes a word for sh. */
export const shq = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
