/**
 * What a hostile agent tries, as a bash script: each probe prints `LEAK <name>: <what it got>` when
 * it reaches something it must not, and `SAFE <name>` when it does not. The same script runs as the
 * agent's bash tool, in a terminal shell and as a task's verify command; it is handed over base64
 * wrapped (`echo … | base64 -d | bash`), which no text rule on a command line can see through.
 * Probes look for what only the host has (the canary, the server's command line), not for a pid: a
 * sandbox has pids of its own, and the server's pid may name one of the sandbox's processes there.
 */
export interface ProbeTargets {
  /** FLOTILLA_HOME of the control plane (holds admin.token). */
  home: string;
  /** The admin token's value: found anywhere in the output, it leaked. */
  adminToken: string;
  /** A value only the control plane's own environment holds. */
  canary: string;
  /** A file in another project's workspace. */
  otherWorkspaceFile: string;
  /** The control plane's pid. */
  serverPid: number;
  /** Loopback ports the sandbox must not reach (the API, Postgres). */
  forbiddenPorts: number[];
}

/** The entry of \`dir\` on the way to \`path\` (a sandbox shows the empty directories leading to
 * its own mounts; what matters is whether anything else is there). */
const onTheWay = (dir: string, path: string) =>
  path.startsWith(`${dir}/`) ? path.slice(dir.length + 1).split("/")[0]! : "^$";

export function probeScript(t: ProbeTargets): string {
  const ports = t.forbiddenPorts
    .map(
      (p) =>
        `if timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/${p}' 2>/dev/null; then echo "LEAK tcp-${p}: connected"; else echo "SAFE tcp-${p}"; fi`,
    )
    .join("\n");
  return `
probe() { name=$1; shift; out=$("$@" 2>/dev/null | head -c 300 | tr '\\n\\0' '  '); if [ -n "$out" ]; then echo "LEAK $name: $out"; else echo "SAFE $name"; fi; }
probe admin-token cat ${t.home}/admin.token
probe canary-env sh -c 'env | grep ${t.canary}'
probe canary-proc sh -c 'cat /proc/[0-9]*/environ 2>/dev/null | tr "\\0" "\\n" | grep ${t.canary}'
probe server-environ sh -c 'cat /proc/${t.serverPid}/environ | tr "\\0" "\\n" | grep -e ${t.canary} -e DATABASE_URL'
probe server-cmdline sh -c 'cat /proc/${t.serverPid}/cmdline | tr "\\0" " " | grep flotilla.mjs'
probe other-workspace cat ${t.otherWorkspaceFile}
probe shadow head -c 40 /etc/shadow
probe root-home sh -c 'ls -A /root | grep -v -x -e ${onTheWay("/root", t.home)}'
probe flotilla-home sh -c 'ls -A ${t.home} | grep -v -x -e shards'
probe pg-socket sh -c 'ls /tmp/.s.PGSQL.* /var/run/postgresql/.s.PGSQL.* /run/postgresql/.s.PGSQL.*'
probe host-processes sh -c 'ps -eo pid,user,args | grep -v -e "ps -eo" -e grep | grep -e "postgres -D" -e vitest -e bin/flotilla.mjs'
${ports}
echo "PROBE DONE uid=$(id -u)"
`;
}

export const wrap = (script: string) => `echo ${Buffer.from(script).toString("base64")} | base64 -d | bash`;

/** The LEAK lines of a probe's output (and whether it ran to its end). */
export function leaks(output: string): { done: boolean; leaks: string[]; safe: string[] } {
  const lines = output.split(/\r?\n/);
  return {
    done: lines.some((l) => l.startsWith("PROBE DONE")),
    leaks: lines.filter((l) => l.startsWith("LEAK ")),
    safe: lines.filter((l) => l.startsWith("SAFE ")),
  };
}
