import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { inputEdge, jsonDepth, MAX_JSON_DEPTH, nulPath } from "../src/api/middleware/input.ts";
import {
  checkHost,
  checkRequestUrl,
  EgressAllow,
  EgressRefused,
  gitEgressArgs,
  gitRemoteHost,
  refusedBecause,
} from "../src/platform/http/egress.ts";

// Pure: no server, no harness, no DNS but the resolver given (and `localhost` from /etc/hosts).

const none = { allow: new EgressAllow([]) };
const resolveTo = (...addresses: string[]) => ({
  allow: new EgressAllow([]),
  resolve: async () => addresses.map((address) => ({ address, family: address.includes(":") ? 6 : 4 })),
});

describe("egress policy", () => {
  it("knows the ranges it refuses, in every spelling", () => {
    const refused: [string, RegExp][] = [
      ["127.0.0.1", /loopback/],
      ["127.255.0.9", /loopback/],
      ["::1", /loopback/],
      ["0.0.0.0", /unspecified/],
      ["::", /unspecified/],
      ["10.1.2.3", /private/],
      ["172.16.0.1", /private/],
      ["172.31.255.255", /private/],
      ["192.168.0.1", /private/],
      ["fd12::1", /private/],
      ["169.254.169.254", /link-local/],
      ["fe80::1", /link-local/],
      ["fe80::1%eth0", /link-local/],
      ["100.64.0.1", /CGNAT/],
      ["224.0.0.1", /multicast/],
      ["::ffff:127.0.0.1", /loopback/],
      ["::ffff:7f00:1", /loopback/],
      ["::ffff:a9fe:a9fe", /link-local/],
      ["::10.0.0.1", /private/],
      ["64:ff9b::169.254.169.254", /link-local/],
      ["2002:7f00:1::1", /loopback/],
    ];
    for (const [a, why] of refused) expect(refusedBecause(a), a).toMatch(why);
    for (const a of ["8.8.8.8", "1.1.1.1", "172.32.0.1", "2606:4700::1111", "::ffff:8.8.8.8", "100.128.0.1"])
      expect(refusedBecause(a), a).toBeUndefined();
  });

  it("lets the operator allow ranges, addresses and names", () => {
    const allow = new EgressAllow(["127.0.0.1/32", "10.0.0.0/8", "[::1]", "localhost", "*.corp.example"]);
    expect(allow.address("127.0.0.1")).toBe(true);
    expect(allow.address("127.0.0.2")).toBe(false);
    expect(allow.address("::ffff:127.0.0.1")).toBe(true);
    expect(allow.address("10.9.9.9")).toBe(true);
    expect(allow.address("::1")).toBe(true);
    expect(allow.host("LocalHost.")).toBe(true);
    expect(allow.host("git.corp.example")).toBe(true);
    expect(allow.host("corp.example.evil")).toBe(false);
  });

  it("judges every address a name resolves to, and hands back only those", async () => {
    await expect(checkHost("a.example", resolveTo("93.184.216.34"))).resolves.toEqual([
      { address: "93.184.216.34", family: 4 },
    ]);
    // One bad address among good ones is enough: the connection could pick it.
    await expect(checkHost("a.example", resolveTo("93.184.216.34", "127.0.0.1"))).rejects.toThrow(
      /^a\.example resolves to a loopback address$/,
    );
    await expect(checkHost("localhost.", none)).rejects.toThrow(/loopback/);
    await expect(
      checkHost("nothing.invalid", {
        ...none,
        resolve: async () => {
          throw new Error("ENOTFOUND");
        },
      }),
    ).rejects.toSatisfy((e: unknown) => e instanceof EgressRefused && e.unresolved);
    // A forge's host (allowed by name) that does not resolve now is not pinned, not refused.
    await expect(
      checkHost("github.com", {
        allow: new EgressAllow(["github.com"]),
        resolve: async () => {
          throw new Error("EAI_AGAIN");
        },
      }),
    ).resolves.toEqual([]);
    // An allowed name is taken as it resolves; an allowed range only covers its addresses.
    await expect(
      checkHost("intranet", { ...resolveTo("10.0.0.5"), allow: new EgressAllow(["intranet"]) }),
    ).resolves.toHaveLength(1);
    await expect(
      checkHost("intranet", {
        ...resolveTo("10.0.0.5", "127.0.0.1"),
        allow: new EgressAllow(["10.0.0.0/8"]),
      }),
    ).rejects.toMatchObject({ address: "127.0.0.1" });
  });

  it("says which field and why, for URLs and git remotes", async () => {
    await expect(checkRequestUrl("http://169.254.169.254/latest", "url", none)).rejects.toMatchObject({
      code: "invalid_request",
      field: "url",
      message: expect.stringMatching(/^url: 169\.254\.169\.254 is a link-local address.*egress\.allow/),
    });
    await expect(checkRequestUrl("http://[::1]:8080/", "webhook", none)).rejects.toMatchObject({
      field: "webhook",
    });
    await expect(checkRequestUrl("http://0x7f000001/", "url", none)).rejects.toMatchObject({ field: "url" });
    await expect(checkRequestUrl("git@127.0.0.1:x/y.git", "repo", none)).rejects.toMatchObject({
      field: "repo",
    });
    await expect(checkRequestUrl("file:///srv/git/x", "repo", none)).resolves.toBeUndefined();
    expect(gitRemoteHost("git@github.com:a/b.git")).toBe("github.com");
    expect(gitRemoteHost("ssh://git@[::1]:22/x")).toBe("[::1]");
    expect(gitRemoteHost("/local/path")).toBeUndefined();
    // An http remote is pinned to what was judged.
    expect(await gitEgressArgs("https://git.example/x.git", "remote", resolveTo("93.184.216.34"))).toEqual([
      "-c",
      "http.curloptResolve=git.example:443:93.184.216.34",
    ]);
  });
});

describe("input edge", () => {
  const app = new Hono()
    .use("*", inputEdge())
    .post("/things/:id", async (c) => c.json({ got: await c.req.json() }))
    .get("/things/:id", (c) => c.json({ id: c.req.param("id") }));
  const post = (body: string, path = "/things/x") =>
    app.request(path, { method: "POST", headers: { "content-type": "application/json" }, body });

  it("measures nesting outside strings", () => {
    expect(jsonDepth("[[{}]]")).toBe(3);
    expect(jsonDepth('["[[[[", {"a": "}}]]"}]')).toBe(2);
    expect(jsonDepth('"\\"[[["')).toBe(0);
    expect(jsonDepth("[".repeat(1_000_000), 64)).toBe(65);
    expect(nulPath({ a: [{ b: "x\0" }] })).toBe("a.0.b");
    expect(nulPath({ a: "fine" })).toBeUndefined();
  });

  it("refuses NUL bytes and deep nesting with a 400 naming where, and lets the rest through", async () => {
    const cases: [Response | Promise<Response>, number, string | undefined][] = [
      [post('{"name": "a\\u0000b"}'), 400, "name"],
      [post('{"list": ["ok", "x\\u0000"]}'), 400, "list.1"],
      [post(`${"[".repeat(10_000)}${"]".repeat(10_000)}`), 400, "body"],
      [post(`${"[".repeat(MAX_JSON_DEPTH)}${"]".repeat(MAX_JSON_DEPTH)}`), 200, undefined],
      [post('{"name": "a\\\\u0000b"}'), 200, undefined], // an escaped backslash, then text
      [app.request("/things/a%00b"), 400, "path"],
      [app.request("/things/x?cursor=a%00"), 400, "cursor"],
      [app.request("/things/x?cursor=ok"), 200, undefined],
    ];
    for (const [res, status, field] of cases) {
      const r = await res;
      expect(r.status).toBe(status);
      if (field) expect((await r.json()).error).toMatchObject({ code: "invalid_request", field });
    }
  });
});
