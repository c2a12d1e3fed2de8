import type { LookupAddress } from "node:dns";
import { lookup as dnsLookup } from "node:dns/promises";
import { BlockList, isIP, type LookupFunction } from "node:net";
import { FlotillaError } from "@flotilla/contracts";

/*
 * Where the control plane may send requests a user chose the address of (webhook URLs, git
 * remotes): never to loopback, private, link-local (the cloud metadata service at 169.254.169.254
 * included), shared (CGNAT), multicast, reserved or unspecified addresses, in any spelling
 * (IPv4-mapped, IPv4-compatible, NAT64 and 6to4 IPv6 forms are judged by the IPv4 address they
 * carry), unless the operator's allow-list (`egress.allow`) names the address's range or the host.
 * A name is judged by every address it resolves to, and a request connects only to the addresses
 * judged (`pinnedLookup`), so a name that resolves elsewhere a moment later (DNS rebinding) does
 * not reach anything new. CIDR math is node:net's BlockList, not our own.
 */

/** The ranges refused unless allowed, with what they are (said in the refusal). */
const REFUSED: [string, number, "ipv4" | "ipv6", string][] = [
  ["0.0.0.0", 8, "ipv4", "an unspecified address"],
  ["127.0.0.0", 8, "ipv4", "a loopback address"],
  ["10.0.0.0", 8, "ipv4", "a private address"],
  ["172.16.0.0", 12, "ipv4", "a private address"],
  ["192.168.0.0", 16, "ipv4", "a private address"],
  ["100.64.0.0", 10, "ipv4", "a shared (CGNAT) address"],
  ["169.254.0.0", 16, "ipv4", "a link-local address (cloud metadata lives there)"],
  ["192.0.0.0", 24, "ipv4", "a reserved address"],
  ["198.18.0.0", 15, "ipv4", "a reserved address"],
  ["224.0.0.0", 4, "ipv4", "a multicast address"],
  ["240.0.0.0", 4, "ipv4", "a reserved address"],
  ["::", 128, "ipv6", "an unspecified address"],
  ["::1", 128, "ipv6", "a loopback address"],
  ["fc00::", 7, "ipv6", "a private address"],
  ["fe80::", 10, "ipv6", "a link-local address"],
  ["fec0::", 10, "ipv6", "a site-local address"],
  ["ff00::", 8, "ipv6", "a multicast address"],
  ["2001::", 32, "ipv6", "a Teredo address"],
];
const RANGES = REFUSED.map(([net, prefix, type, what]) => {
  const list = new BlockList();
  list.addSubnet(net, prefix, type);
  return { list, type, what };
});

/** An IPv6 address's eight groups (a zone dropped, a dotted IPv4 tail read as two groups). */
function groups(address: string): number[] {
  let s = address.split("%")[0]!;
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    s = `${s.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = s.split("::") as [string, string | undefined];
  const h = head ? head.split(":") : [];
  const t = tail === undefined ? [] : tail ? tail.split(":") : [];
  const fill = tail === undefined ? 0 : 8 - h.length - t.length;
  return [...h, ...Array<string>(fill).fill("0"), ...t].map((x) => Number.parseInt(x, 16));
}

const v4Of = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;

/** The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), if any. */
export function embeddedIpv4(address: string): string | undefined {
  const g = groups(address);
  if (g.length !== 8) return undefined;
  const zero = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  if (zero(0, 5) && (g[5] === 0 || g[5] === 0xffff)) return v4Of(g[6]!, g[7]!); // ::a.b.c.d, ::ffff:a.b.c.d
  if (g[0] === 0x64 && g[1] === 0xff9b && zero(2, 6)) return v4Of(g[6]!, g[7]!); // NAT64
  if (g[0] === 0x2002) return v4Of(g[1]!, g[2]!); // 6to4
  return undefined;
}

/** Why an address is refused (what it is), or undefined for a public address. */
export function refusedBecause(address: string): string | undefined {
  const family = isIP(address);
  if (family === 0) return "not an IP address";
  if (family === 6) {
    const v4 = embeddedIpv4(address);
    if (v4 && !/^::1?$/.test(address)) return refusedBecause(v4);
  }
  const type = family === 4 ? "ipv4" : "ipv6";
  const plain = address.split("%")[0]!;
  return RANGES.find((r) => r.type === type && r.list.check(plain, type))?.what;
}

/** The operator's exceptions: CIDRs or addresses, and host names (`*.example.internal` for a domain). */
export class EgressAllow {
  private readonly nets = new BlockList();
  private readonly names = new Set<string>();
  private readonly suffixes: string[] = [];

  constructor(entries: readonly string[]) {
    for (const raw of entries) {
      const e = raw.trim().toLowerCase();
      const [addr, prefix] = e.replace(/^\[|\](?=\/|$)/g, "").split("/") as [string, string | undefined];
      const family = isIP(addr);
      if (family) {
        const type = family === 4 ? "ipv4" : "ipv6";
        this.nets.addSubnet(addr, prefix === undefined ? (family === 4 ? 32 : 128) : Number(prefix), type);
      } else if (e.startsWith("*.")) this.suffixes.push(e.slice(1));
      else this.names.add(normalHost(e));
    }
  }

  host(host: string): boolean {
    const h = normalHost(host);
    return this.names.has(h) || this.suffixes.some((s) => h.endsWith(s));
  }

  address(address: string): boolean {
    const family = isIP(address);
    if (!family) return false;
    const plain = address.split("%")[0]!;
    if (this.nets.check(plain, family === 4 ? "ipv4" : "ipv6")) return true;
    const v4 = family === 6 ? embeddedIpv4(plain) : undefined;
    return v4 !== undefined && this.nets.check(v4, "ipv4");
  }
}

/** Lower case, no brackets, no trailing dot (`localhost.` is `localhost`). */
export function normalHost(host: string): string {
  return host
    .toLowerCase()
    .replace(/^\[(.*)\]$/, "$1")
    .replace(/\.+$/, "");
}

export type Resolve = (host: string) => Promise<LookupAddress[]>;
const systemResolve: Resolve = (host) => dnsLookup(host, { all: true, verbatim: true });

/** A destination refused by the policy; `why` is for the person who chose it, never a delivery log. */
export class EgressRefused extends Error {
  constructor(
    readonly host: string,
    readonly why: string,
    /** The address refused, for the server's log only. */
    readonly address?: string,
  ) {
    super(`${host} ${why}`);
  }
  /** The name did not resolve (nothing was judged): not a refusal by the policy. */
  get unresolved(): boolean {
    return this.why === UNRESOLVED;
  }
}
const UNRESOLVED = "does not resolve";

export interface EgressPolicy {
  allow: EgressAllow;
  resolve?: Resolve;
}

/**
 * The addresses a request to `host` may connect to: all it resolves to, each judged. Throws
 * `EgressRefused` when any is refused and not allowed (the connection could pick any of them) or
 * when the name does not resolve. An allowed host name is taken as it resolves.
 */
export async function checkHost(host: string, policy: EgressPolicy): Promise<LookupAddress[]> {
  const h = normalHost(host);
  const family = isIP(h);
  let addrs: LookupAddress[];
  if (family) addrs = [{ address: h, family }];
  else {
    // A name the operator allowed needs no answer now: empty means "not pinned, connect as usual".
    const named = policy.allow.host(h);
    try {
      addrs = await (policy.resolve ?? systemResolve)(h);
    } catch {
      if (named) return [];
      throw new EgressRefused(h, UNRESOLVED);
    }
    if (named) return addrs;
    if (addrs.length === 0) throw new EgressRefused(h, UNRESOLVED);
  }
  for (const a of addrs) {
    if (policy.allow.address(a.address)) continue;
    const why = refusedBecause(a.address);
    // The address itself is not said: a refusal must not map the inside of the network.
    if (why) throw new EgressRefused(h, family ? `is ${why}` : `resolves to ${why}`, a.address);
  }
  return addrs;
}

/** A `lookup` for node:net/http that answers only with addresses already judged (no second DNS answer). */
export function pinnedLookup(addrs: LookupAddress[]): LookupFunction {
  return ((_host: string, options: { all?: boolean }, cb: (...a: unknown[]) => void) => {
    if (options?.all) cb(null, addrs);
    else cb(null, addrs[0]!.address, addrs[0]!.family);
  }) as unknown as LookupFunction;
}

/** The host of a git remote: URLs (`https://`, `ssh://`, `git://`) and scp-like `user@host:path`; none for local ones. */
export function gitRemoteHost(remote: string): string | undefined {
  if (/^file:/i.test(remote)) return undefined;
  if (/^[a-z][\w+.-]*:\/\//i.test(remote)) {
    try {
      return new URL(remote).hostname || undefined;
    } catch {
      return undefined;
    }
  }
  const scp = /^(?:[^@/]+@)?(\[[^\]]+\]|[^:/]+):/.exec(remote);
  return scp ? scp[1] : undefined;
}

const REFUSAL_HINT =
  "Flotilla does not send requests to loopback, private, link-local or metadata addresses unless the operator allows them (egress.allow in config.yaml)";

/** Checks a URL a request gave, as a 400 naming its field and why. Returns the addresses judged. */
export async function checkRequestUrl(
  url: string,
  field: string,
  policy: EgressPolicy,
): Promise<LookupAddress[] | undefined> {
  const host = /^https?:/i.test(url) ? new URL(url).hostname : gitRemoteHost(url);
  if (!host) return undefined;
  try {
    return await checkHost(host, policy);
  } catch (e) {
    if (!(e instanceof EgressRefused)) throw e;
    throw new FlotillaError("invalid_request", `${field}: ${e.host} ${e.why}; ${REFUSAL_HINT}`, {
      field,
    });
  }
}

/**
 * `-c http.curloptResolve=…` for a git command that talks to an http(s) remote: git connects to
 * the addresses judged here and nowhere else (another DNS answer meanwhile is not asked for).
 * Refused remotes throw the same 400 as `checkRequestUrl`; other schemes (ssh, git) are judged but
 * cannot be pinned.
 */
export async function gitEgressArgs(remote: string, field: string, policy: EgressPolicy): Promise<string[]> {
  const addrs = await checkRequestUrl(remote, field, policy);
  if (!addrs?.length || !/^https?:\/\//i.test(remote)) return [];
  const u = new URL(remote);
  const host = normalHost(u.hostname);
  if (isIP(host)) return [];
  const port = u.port || (u.protocol === "https:" ? "443" : "80");
  const list = addrs.map((a) => (a.family === 6 ? `[${a.address}]` : a.address)).join(",");
  return ["-c", `http.curloptResolve=${u.hostname}:${port}:${list}`];
}

const policies = new WeakMap<object, EgressPolicy>();

/**
 * The policy of a configuration: its `egress.allow` and the hosts of its forges (an operator
 * named those). Made once per `egress` object.
 */
export function egressPolicy(config: {
  egress: { allow: string[] };
  forges: { hosts: string[] }[];
}): EgressPolicy {
  let p = policies.get(config.egress);
  if (!p) {
    const forgeHosts = config.forges
      .flatMap((f) => f.hosts)
      .map((h) => (isIP(h) ? h : h.replace(/:\d+$/, "")));
    p = { allow: new EgressAllow([...config.egress.allow, ...forgeHosts]) };
    policies.set(config.egress, p);
  }
  return p;
}
