import { readFileSync } from "node:fs";
import { CSRF_COOKIE, CSRF_HEADER } from "@flotilla/contracts";
import fc from "fast-check";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeRepo, startTestServer, type TestServer } from "../../../test/support.ts";
import { scenario } from "./scenario.ts";

/*
 * Must show 4: every operation of the OpenAPI document the server serves that takes a body or
 * parameters is sent bodies and parameters made by fast-check from its own JSON schema (valid-ish
 * values, wrong types, NUL bytes, huge strings, deep nesting, extra and missing fields) plus raw
 * bodies no schema describes; with an admin token, without one and with a bad one. No answer is a
 * 5xx, nothing unhandled reaches the log, and the rows of the main tables grew by no more than the
 * requests that succeeded. Deterministic (one seed), bounded (about 1,500 requests), no agents:
 * the scheduler is off (tasks stay queued) and no generated session body names a real repository.
 */

const SEED = 20261203;
const RUNS_PER_OPERATION = 30;

// biome-ignore lint/suspicious/noExplicitAny: JSON schema
type Schema = Record<string, any>;
interface Operation {
  method: string;
  path: string;
  params: { name: string; in: "path" | "query"; schema: Schema; required: boolean }[];
  body: Schema | undefined;
}

let t: TestServer;
let db: pg.Client;
let doc: Schema;
let repo: string;

beforeAll(async () => {
  t = await startTestServer({ scenario, scheduler: { enabled: false } });
  db = new pg.Client({ connectionString: t.db });
  await db.connect();
  doc = await (await fetch(`${t.url}/openapi.json`)).json();
  repo = makeRepo();
});
afterAll(async () => {
  await db?.end();
  await t?.close();
});

function operations(): Operation[] {
  const ops: Operation[] = [];
  for (const [path, item] of Object.entries(doc.paths as Record<string, Schema>))
    for (const [method, op] of Object.entries(item)) {
      const params = (op.parameters ?? []).filter((p: Schema) => p.in === "path" || p.in === "query");
      const body = op.requestBody?.content?.["application/json"]?.schema;
      if (params.length === 0 && !body) continue;
      ops.push({ method: method.toUpperCase(), path, params, body });
    }
  return ops;
}

const deref = (s: Schema): Schema =>
  s?.$ref ? deref(doc.components.schemas[(s.$ref as string).split("/").pop()!]) : (s ?? {});

const nul = fc.string({ maxLength: 12 }).map((s) => `${s}\u0000${s}`);
const huge = fc.constantFrom("x".repeat(300_000), "é".repeat(70_000), `${"a".repeat(5000)}\u0000`);
const deep = fc.constantFrom(
  JSON.parse(`${"[".repeat(200)}${"]".repeat(200)}`),
  JSON.parse(`${'{"a":'.repeat(200)}1${"}".repeat(200)}`),
);
const wrongType = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 }),
);
/** Destinations no webhook or clone may reach; a name that does not resolve; a local path that is no repository. */
const urlish = fc.oneof(
  fc.constantFrom(
    "http://127.0.0.1:1/x",
    "http://[::1]:1/x",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://localhost./x",
    "https://fuzz.invalid/hook",
    "ftp://example.invalid/x",
  ),
  fc.webUrl().map((u) => u.replace(/^(https?:\/\/)([^/:?#]+)/, "$1$2.invalid")),
);
const notRepo = fc.oneof(
  fc.string({ maxLength: 20 }).map((s) => `/nonexistent-fuzz/${s}`),
  urlish,
  nul.map((s) => `/tmp/${s}`),
);

/** Values for a schema: mostly valid-ish, sometimes the wrong thing. `key` picks special cases. */
function arb(schema0: Schema, key = "", depth = 0, op?: Operation): fc.Arbitrary<unknown> {
  const schema = deref(schema0);
  const bad = fc.oneof(wrongType, nul, huge, deep);
  const good = goodArb(schema, key, depth, op);
  return fc.oneof({ weight: 6, arbitrary: good }, { weight: 1, arbitrary: bad });
}

function goodArb(schema: Schema, key: string, depth: number, op?: Operation): fc.Arbitrary<unknown> {
  if (key === "repo")
    // A real repository only for tasks (they stay queued): a session would start an agent.
    return op?.path === "/tasks"
      ? fc.oneof({ weight: 1, arbitrary: fc.constant(repo) }, { weight: 4, arbitrary: notRepo })
      : notRepo;
  if (key === "url" || key === "webhook" || key === "remote") return urlish;
  if (depth > 4) return fc.constant(null);
  if (schema.const !== undefined) return fc.constant(schema.const);
  if (schema.enum) return fc.constantFrom(...(schema.enum as unknown[]));
  const alts = schema.anyOf ?? schema.oneOf;
  if (alts) return fc.oneof(...(alts as Schema[]).map((s) => goodArb(deref(s), key, depth + 1, op)));
  const types: string[] = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
  const each = types.map((type): fc.Arbitrary<unknown> => {
    switch (type) {
      case "object": {
        const props = Object.entries((schema.properties ?? {}) as Record<string, Schema>);
        if (props.length === 0)
          return fc.dictionary(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 }), { maxKeys: 4 });
        return fc.record(Object.fromEntries(props.map(([k, s]) => [k, arb(s, k, depth + 1, op)])), {
          requiredKeys: (schema.required ?? []) as never[],
        });
      }
      case "array":
        return fc.array(arb(schema.items ?? {}, key, depth + 1, op), {
          minLength: Math.min(schema.minItems ?? 0, 3),
          maxLength: Math.min(schema.maxItems ?? 4, 4),
        });
      case "integer":
        return fc.integer({ min: schema.minimum ?? -1e6, max: schema.maximum ?? 1e6 });
      case "number":
        return fc.double({ min: schema.minimum ?? -1e6, max: schema.maximum ?? 1e6, noNaN: true });
      case "boolean":
        return fc.boolean();
      case "null":
        return fc.constant(null);
      default:
        return fc.string({
          minLength: schema.minLength ?? 0,
          maxLength: Math.min(schema.maxLength ?? 40, 40),
        });
    }
  });
  return each.length ? fc.oneof(...each) : fc.jsonValue({ maxDepth: 2 });
}

/** A body: the schema's value, that value with a field dropped, replaced or added, or any JSON. */
function bodyArb(op: Operation): fc.Arbitrary<unknown> {
  const value = arb(op.body!, "", 0, op);
  const mutated = fc
    .tuple(value, fc.string({ maxLength: 8 }), fc.oneof(wrongType, nul, huge, deep), fc.nat(3))
    .map(([v, k, x, how]) => {
      if (!v || typeof v !== "object" || Array.isArray(v)) return v;
      const o = { ...(v as Record<string, unknown>) };
      const keys = Object.keys(o);
      if (how === 0 && keys.length) delete o[keys[0]!];
      else if (how === 1 && keys.length) o[keys[keys.length - 1]!] = x;
      else if (how === 2) o[`${k}\u0000`] = x;
      else o[k || "extra"] = x;
      return o;
    });
  return fc.oneof(
    { weight: 4, arbitrary: value },
    { weight: 4, arbitrary: mutated },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  );
}

/** Raw bodies no schema makes: deep nesting past any limit, broken JSON, raw NULs, the wrong type, too big. */
const RAW: { text: string; type?: string }[] = [
  { text: `${"[".repeat(10_000)}${"]".repeat(10_000)}` },
  { text: "[".repeat(500_000) },
  { text: `${'{"a":'.repeat(10_000)}1${"}".repeat(10_000)}` },
  { text: '{"prompt": "a\u0000b", "repo": "/tmp"}' },
  { text: '{"name": "x\\u0000y"}' },
  { text: '{"\\u0000": 1}' },
  { text: '{"a": ' },
  { text: "" },
  { text: "null" },
  { text: `{"x": "${"y".repeat(1_200_000)}"}` },
  { text: '{"name": "x"}', type: "text/plain" },
  { text: '{"name": "x"}', type: "application/json; charset=latin1" },
  { text: "\u0000", type: "application/json" },
];

const idArb = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.constantFrom("ses_0000000000000", "tsk_nope", "whk_nope", "..", ".", "%", "a/b", "0"),
  nul,
  fc.constant("x".repeat(5000)),
);

function paramsArb(op: Operation): fc.Arbitrary<{ path: string; query: string }> {
  const entries = op.params.map((p) =>
    fc
      .tuple(
        p.in === "path" ? idArb : fc.oneof(arb(p.schema, p.name), nul, fc.string({ maxLength: 10 })),
        fc.boolean(),
      )
      .map(([v, present]) => ({ p, v: present || p.in === "path" ? v : undefined })),
  );
  return fc.tuple(...entries).map((vals) => {
    let path = op.path;
    const q = new URLSearchParams();
    for (const { p, v } of vals) {
      const s = typeof v === "string" ? v : JSON.stringify(v);
      if (p.in === "path") path = path.replace(`{${p.name}}`, encodeURIComponent(s || "x"));
      else if (v !== undefined) q.append(p.name, s);
    }
    const query = q.toString();
    return { path, query: query ? `?${query}` : "" };
  });
}

interface Outcome {
  status: number;
  text: string;
}

async function send(
  op: Operation,
  url: string,
  body: { text: string; type?: string } | undefined,
  auth: "admin" | "none" | "bad",
): Promise<Outcome> {
  const headers: Record<string, string> = {};
  if (auth === "admin") headers.authorization = `Bearer ${t.token}`;
  if (auth === "bad") headers.authorization = "Bearer flt_fuzz-not-a-token";
  if (body) headers["content-type"] = body.type ?? "application/json";
  // A big body the server answers before reading (over the limit, a NUL in the path, no token)
  // has its socket closed under the upload: its own connection, so no other request is hit.
  const big = body !== undefined && body.text.length > 64 * 1024;
  if (big) headers.connection = "close";
  let res: Response;
  try {
    res = await fetch(`${t.url}${url}`, { method: op.method, headers, body: body?.text });
  } catch (e) {
    // The answer is lost with the socket (fetch has no way to read it); the log check below still
    // sees any unhandled error, and a crash would fail every request after this one.
    if (big) return { status: 0, text: "(upload cut by an early answer)" };
    throw e;
  }
  if (res.headers.get("content-type")?.startsWith("text/event-stream")) {
    await res.body?.cancel();
    return { status: res.status, text: "(stream)" };
  }
  return { status: res.status, text: (await res.text()).slice(0, 300) };
}

const PUBLIC_OPS = new Set(["POST /auth/session", "POST /forges/{name}/webhook", "GET /auth/session"]);

async function counts(): Promise<Record<string, number>> {
  const q = async (sql: string) => Number((await db.query(sql)).rows[0].count);
  return {
    sessions: await q("select count(*) from sessions"),
    tasks: await q("select count(*) from tasks"),
    projects: await q("select count(*) from projects"),
    webhooks: await q("select count(*) from webhook_subscriptions"),
    tokens: await q("select count(*) from tokens"),
    webSessions: await q("select count(*) from web_sessions"),
    secrets: await q("select count(*) from secrets where name not like 'webhook.%'"),
    webhookSecrets: await q(
      "select count(*) from secrets where name like 'webhook.%' and name <> 'webhook.org'",
    ),
  };
}

describe("fuzzed requests", () => {
  it("no route answers a 5xx, and rejected requests create nothing", async () => {
    const ops = operations();
    expect(ops.length).toBeGreaterThan(20);
    const before = await counts();
    const ok: Record<string, number> = {};
    const fivexx: string[] = [];
    let sent = 0;
    let cut = 0;
    const record = (op: Operation, url: string, what: string, o: Outcome) => {
      sent++;
      if (o.status === 0) cut++;
      const key = `${op.method} ${op.path}`;
      if (o.status >= 500) fivexx.push(`${key} ${url.slice(0, 120)} ${what}: ${o.status} ${o.text}`);
      if (o.status >= 200 && o.status < 300) ok[key] = (ok[key] ?? 0) + 1;
    };
    for (const [i, op] of ops.entries()) {
      const key = `${op.method} ${op.path}`;
      const seed = SEED + i;
      const urls = fc.sample(paramsArb(op), { numRuns: RUNS_PER_OPERATION, seed });
      const bodies = op.body ? fc.sample(bodyArb(op), { numRuns: RUNS_PER_OPERATION, seed }) : [];
      for (let n = 0; n < RUNS_PER_OPERATION; n++) {
        const url = `${urls[n]!.path}${urls[n]!.query}`;
        const body = op.body ? { text: JSON.stringify(bodies[n]) ?? "null" } : undefined;
        record(op, url, body?.text.slice(0, 200) ?? "", await send(op, url, body, "admin"));
      }
      const url = `${urls[0]!.path}${urls[0]!.query}`;
      if (op.body)
        for (const raw of RAW) record(op, url, raw.text.slice(0, 60), await send(op, url, raw, "admin"));
      // Without a token and with a bad one: refused (public routes aside), never a 5xx.
      for (const auth of ["none", "bad"] as const) {
        const body = op.body ? { text: JSON.stringify(bodies[0] ?? {}) } : undefined;
        const o = await send(op, url, body, auth);
        record(op, url, auth, o);
        if (!PUBLIC_OPS.has(key)) expect(o.status, `${key} ${auth}`).toBeGreaterThanOrEqual(400);
        const deepBody = { text: `${"[".repeat(10_000)}${"]".repeat(10_000)}` };
        if (op.body) record(op, url, `${auth} deep`, await send(op, url, deepBody, auth));
      }
    }
    console.info(`fuzz: ${sent} requests over ${ops.length} operations, ${cut} uploads cut, successes`, ok);
    expect(fivexx).toEqual([]);
    expect(sent).toBeGreaterThan(1000);

    // Nothing was made beyond what the successes could have made (an idempotent success makes none).
    const after = await counts();
    const grew = (k: string) => after[k]! - before[k]!;
    expect(grew("sessions")).toBeLessThanOrEqual(ok["POST /sessions"] ?? 0);
    expect(grew("tasks")).toBeLessThanOrEqual(ok["POST /tasks"] ?? 0);
    expect(grew("projects")).toBeLessThanOrEqual((ok["POST /tasks"] ?? 0) + (ok["POST /sessions"] ?? 0));
    expect(grew("webhooks")).toBeLessThanOrEqual(ok["POST /webhooks"] ?? 0);
    expect(grew("webhookSecrets")).toBeLessThanOrEqual(ok["POST /webhooks"] ?? 0);
    expect(grew("tokens")).toBeLessThanOrEqual(ok["POST /tokens"] ?? 0);
    expect(grew("secrets")).toBeLessThanOrEqual(ok["POST /secrets"] ?? 0);
    expect(grew("webSessions")).toBeLessThanOrEqual(ok["POST /auth/session"] ?? 0);
    // No generated session body names a real repository: no agent was started.
    expect(grew("sessions")).toBe(0);
    expect(readFileSync(t.logFile, "utf8")).not.toContain("unhandled error");
  });

  it("a cookie-authenticated mutation with a malformed CSRF header is a 403", async () => {
    const login = await fetch(`${t.url}/auth/session`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ token: t.token }),
    });
    expect(login.status).toBe(200);
    const cookies = login.headers.getSetCookie().map((c) => c.split(";")[0]!);
    const csrf = cookies.find((c) => c.startsWith(`${CSRF_COOKIE}=`))?.split("=")[1] ?? "";
    expect(csrf.length).toBeGreaterThan(8);
    const bad = [
      "é".repeat(csrf.length), // as many characters as the cookie, not as many bytes
      `${csrf.slice(0, -1)}\u00ff`,
      "",
      "x",
      csrf.repeat(20),
      csrf.toUpperCase(),
    ];
    for (const header of bad) {
      const res = await fetch(`${t.url}/tokens`, {
        method: "POST",
        headers: {
          cookie: cookies.join("; "),
          "content-type": "application/json",
          ...(header ? { [CSRF_HEADER]: header } : {}),
        },
        body: JSON.stringify({ name: "csrf-fuzz" }),
      });
      expect(res.status, JSON.stringify(header)).toBe(403);
      expect((await res.json()).error.code).toBe("forbidden");
    }
  });
});
