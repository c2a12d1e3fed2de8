import { describe, expect, it } from "vitest";
import { bwrapArgs, type HostFacts, type SandboxSpec } from "../src/runtime/sandbox/args.ts";

const host: HostFacts = {
  rootSymlinks: { "/bin": "usr/bin", "/lib": "usr/lib", "/lib64": "usr/lib64", "/sbin": "usr/sbin" },
  rootDirs: [],
  etcSecrets: ["/etc/shadow", "/etc/ssl/private/"],
  dropTo: { uid: 999, gid: 995 },
};
const spec: SandboxSpec = {
  rw: [{ src: "/root/.flotilla/shards/shd_1", dest: "/root/.flotilla/shards/shd_1" }],
  ro: [{ src: "/opt/oc/bin", dest: "/opt/oc/bin" }],
  net: "isolated",
  cwd: "/root/.flotilla/shards/shd_1/workspaces/wsp_1",
  env: { PATH: "/usr/bin:/bin", HOME: "/root/.flotilla/shards/shd_1/home" },
  dieWithParent: true,
};

/** Pairs of (flag, value) that appear in order in args. */
const pairs = (args: string[], flag: string) => args.flatMap((a, i) => (a === flag ? [args[i + 1]] : []));

describe("bwrapArgs", () => {
  const args = bwrapArgs(host, spec, ["bash", "-c", "echo hi"]);

  it("unshares every namespace, the network included, and starts a new session", () => {
    expect(args).toEqual(
      expect.arrayContaining(["--unshare-pid", "--unshare-ipc", "--unshare-net", "--new-session"]),
    );
    expect(args).toContain("--die-with-parent");
  });

  it("as root, drops to the agent's user with no capabilities before the command", () => {
    const dd = args.indexOf("--");
    expect(args.slice(dd + 1, dd + 9)).toEqual([
      "setpriv",
      "--reuid=999",
      "--regid=995",
      "--clear-groups",
      "--no-new-privs",
      "--inh-caps=-all",
      "--bounding-set=-all",
      "--",
    ]);
    expect(args.slice(-3)).toEqual(["bash", "-c", "echo hi"]);
    expect(args).not.toContain("--unshare-user");
  });

  it("as a user, uses a user namespace and no setpriv", () => {
    const a = bwrapArgs({ ...host, dropTo: null }, spec, ["true"]);
    expect(a).toContain("--unshare-user");
    expect(a).not.toContain("setpriv");
  });

  it("binds only the system read-only and the named trees; masks secrets", () => {
    expect(pairs(args, "--ro-bind")).toEqual(["/usr", "/etc", "/dev/null", "/opt/oc/bin"]);
    expect(pairs(args, "--bind")).toEqual(["/root/.flotilla/shards/shd_1"]);
    // /etc/shadow hidden behind /dev/null, a secret directory behind an empty tmpfs.
    expect(args.join(" ")).toContain("--ro-bind /dev/null /etc/shadow");
    expect(pairs(args, "--tmpfs")).toContain("/etc/ssl/private");
    expect(pairs(args, "--symlink")).toEqual(["usr/bin", "usr/sbin", "usr/lib", "usr/lib64"]);
    // Nothing of the host's root, /home, /var or /run.
    for (const p of ["/", "/root", "/home", "/var/lib", "/run/postgresql"])
      expect([...pairs(args, "--bind"), ...pairs(args, "--ro-bind")]).not.toContain(p);
  });

  it("makes every parent of a mount point 0755 so the unprivileged user can walk to its trees", () => {
    const s = args.join(" ");
    for (const d of ["/root", "/root/.flotilla", "/root/.flotilla/shards", "/opt", "/opt/oc"])
      expect(s).toContain(`--perms 0755 --dir ${d} `);
    expect(s).toContain("--perms 1777 --tmpfs /tmp");
  });

  it("builds the environment from nothing", () => {
    expect(args).toContain("--clearenv");
    expect(pairs(args, "--setenv")).toEqual(["PATH", "HOME"]);
  });

  it("shares the host network only when asked", () => {
    expect(bwrapArgs(host, { ...spec, net: "host" }, ["true"])).not.toContain("--unshare-net");
  });
});
