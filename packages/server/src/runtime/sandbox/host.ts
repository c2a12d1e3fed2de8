import { execFileSync } from "node:child_process";
import { existsSync, lstatSync, readFileSync, readlinkSync } from "node:fs";
import { delimiter, join } from "node:path";
import { FlotillaError } from "@flotilla/contracts";
import { ETC_SECRETS, type HostFacts } from "./args.ts";

/** The system user sandboxed agents run as when the control plane runs as root. */
export const AGENT_USER = "flotilla-agent";

/** An executable on PATH, or null. */
export function which(name: string, path = process.env.PATH ?? "/usr/bin:/bin"): string | null {
  for (const dir of path.split(delimiter)) {
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  return null;
}

function userIds(name: string): { uid: number; gid: number } | undefined {
  for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
    const [user, , uid, gid] = line.split(":");
    if (user === name) return { uid: Number(uid), gid: Number(gid) };
  }
  return undefined;
}

/** The agent's user, created (a system user with no home and no login shell) on first use. */
export function agentUser(): { uid: number; gid: number } {
  let ids = userIds(AGENT_USER);
  if (!ids) {
    execFileSync("useradd", [
      "--system",
      "--user-group",
      "--no-create-home",
      "--home-dir",
      "/nonexistent",
      "--shell",
      "/usr/sbin/nologin",
      AGENT_USER,
    ]);
    ids = userIds(AGENT_USER);
  }
  if (!ids) throw new Error(`could not create the ${AGENT_USER} user`);
  return ids;
}

/** Reads what the argument builder needs to know about this host. */
export function hostFacts(isRoot = process.getuid?.() === 0): HostFacts {
  const rootSymlinks: Record<string, string> = {};
  const rootDirs: string[] = [];
  for (const d of ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]) {
    try {
      const st = lstatSync(d);
      if (st.isSymbolicLink()) rootSymlinks[d] = readlinkSync(d);
      else if (st.isDirectory()) rootDirs.push(d);
    } catch {
      // Not on this distribution (e.g. /libx32): nothing to bind.
    }
  }
  const etcSecrets: string[] = [];
  for (const p of ETC_SECRETS) {
    try {
      const st = lstatSync(p);
      etcSecrets.push(st.isDirectory() ? `${p}/` : p);
    } catch {
      // Absent here: nothing to hide.
    }
  }
  return { rootSymlinks, rootDirs, etcSecrets, dropTo: isRoot ? agentUser() : null };
}

/** What the sandbox runtime needs on this machine, or an error that says how to get it. */
export function sandboxTools(): { bwrap: string; socat: string } {
  const bwrap = which("bwrap");
  const socat = which("socat");
  if (!bwrap || !socat) {
    const missing = [!bwrap && "bubblewrap", !socat && "socat"].filter((x): x is string => Boolean(x));
    throw new FlotillaError(
      "runtime_unavailable",
      `the sandbox runtime needs ${missing.join(" and ")}, which ${missing.length > 1 ? "are" : "is"} not installed: apt-get install ${missing.join(" ")} (or set runtime: local in config.yaml to run agents unsandboxed on purpose, unsafe for untrusted prompts)`,
    );
  }
  return { bwrap, socat };
}
