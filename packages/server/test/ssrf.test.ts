import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  collectUntil,
  LOOPBACK_ALLOW,
  makeRepo,
  startTestServer,
  type TestServer,
  untilTurnFinished,
  waitFor,
} from "../../../test/support.ts";
import { scenario } from "./scenario.ts";

/*
 * Must show 5: webhook and git URLs to loopback, link-local (metadata), private addresses and to a
 * name that resolves to loopback are refused with an error naming the field, nothing is created,
 * they are accepted once the operator allows them, and a delivery whose destination is no longer
 * allowed when it is sent records one generic error and never connects.
 */

let t: TestServer;
let db: pg.Client;
let receiver: Server;
let hits = 0;
let port = 0;

beforeAll(async () => {
  receiver = createServer((req, res) => {
    hits++;
    req.resume();
    res.writeHead(200).end("ok");
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  port = (receiver.address() as AddressInfo).port;
  // The default policy: nothing allowed. No scheduler: submitted tasks stay queued (no agents).
  t = await startTestServer({
    scenario,
    config: { egress: { allow: [] } },
    scheduler: { enabled: false },
    webhooks: { maxAttempts: 2, backoffBaseMs: 50 },
  });
  db = new pg.Client({ connectionString: t.db });
  await db.connect();
});
afterAll(async () => {
  await db?.end();
  await t?.close();
  await new Promise<void>((r) => receiver?.close(() => r()));
});

const refusedUrls = () => [
  { url: `http://127.0.0.1:${port}/hook`, why: "loopback" },
  { url: `http://[::1]:${port}/hook`, why: "loopback" },
  { url: `http://[::ffff:127.0.0.1]:${port}/hook`, why: "loopback" },
  { url: "http://169.254.169.254/latest/meta-data/", why: "link-local" },
  { url: "http://10.0.0.1/hook", why: "private" },
  { url: "http://192.168.1.1/hook", why: "private" },
  { url: `http://localhost:${port}/hook`, why: "loopback" },
  { url: `http://localhost.:${port}/hook`, why: "loopback" },
  { url: `http://0x7f000001:${port}/hook`, why: "loopback" },
];

async function call(method: string, path: string, body: unknown) {
  const res = await fetch(`${t.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${t.token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return {
    status: res.status,
    body: (await res.json()) as { error?: { code: string; field?: string; message: string } } & Record<
      string,
      unknown
    >,
  };
}

async function counts() {
  const q = async (table: string) => Number((await db.query(`select count(*) from ${table}`)).rows[0].count);
  return {
    subscriptions: await q("webhook_subscriptions"),
    tasks: await q("tasks"),
    sessions: await q("sessions"),
    projects: await q("projects"),
    secrets: await q("secrets"),
  };
}

function expectRefused(
  res: Awaited<ReturnType<typeof call>>,
  field: string,
  why: string,
  what: string,
): void {
  expect(res.status, `${what}: ${JSON.stringify(res.body)}`).toBe(400);
  expect(res.body.error).toMatchObject({ code: "invalid_request", field });
  expect(res.body.error!.message).toContain(`${field}: `);
  expect(res.body.error!.message).toContain(why);
  expect(res.body.error!.message).toContain("egress.allow");
}

describe("egress policy", () => {
  it("refuses webhook and git URLs to loopback, metadata and private addresses, creating nothing", async () => {
    const repo = makeRepo();
    const before = await counts();
    for (const { url, why } of refusedUrls()) {
      expectRefused(await call("POST", "/webhooks", { url }), "url", why, `webhook ${url}`);
      expectRefused(
        await call("POST", "/tasks", { repo, prompt: "say hi", webhook: url }),
        "webhook",
        why,
        `task webhook ${url}`,
      );
      const git = `${url.replace(/\/hook$|\/latest.*$/, "")}/repo.git`;
      expectRefused(
        await call("POST", "/tasks", { repo: git, prompt: "say hi" }),
        "repo",
        why,
        `task repo ${git}`,
      );
      expectRefused(
        await call("POST", "/sessions", { repo: git, prompt: "say hi" }),
        "repo",
        why,
        `session repo ${git}`,
      );
    }
    // ssh and scp-like remotes are judged by their host too.
    expectRefused(
      await call("POST", "/sessions", { repo: "ssh://git@127.0.0.1/x.git", prompt: "hi" }),
      "repo",
      "loopback",
      "ssh",
    );
    expectRefused(
      await call("POST", "/tasks", { repo: "git@localhost:x.git", prompt: "hi" }),
      "repo",
      "loopback",
      "scp-like",
    );
    expect(await counts()).toEqual(before);
    expect(hits).toBe(0);
  });

  it("refuses a push to such a remote, before committing anything", async () => {
    const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "write hello" });
    await collectUntil(t.client, s.id, untilTurnFinished());
    for (const remote of [`http://127.0.0.1:${port}/x.git`, "http://169.254.169.254/x.git"]) {
      const res = await call("POST", `/sessions/${s.id}/push`, { remote });
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.body.error).toMatchObject({ code: "invalid_request", field: "remote" });
    }
    const events = await db.query("select count(*) from events where session_id = $1 and type = 'git'", [
      s.id,
    ]);
    expect(Number(events.rows[0].count)).toBe(0);
    await t.client.sessions.delete(s.id).catch(() => {});
  });

  it("accepts them when the operator allows them, and refuses at delivery once no longer allowed", async () => {
    t.config.egress = { allow: [...LOOPBACK_ALLOW, "10.0.0.0/8"] };
    await t.restart();
    const repo = makeRepo();
    for (const url of [`http://127.0.0.1:${port}/a`, `http://[::1]:${port}/b`, "http://10.0.0.1/c"]) {
      const res = await call("POST", "/webhooks", { url, events: ["task.queued"] });
      expect(res.status, `${url}: ${JSON.stringify(res.body)}`).toBe(201);
      await t.client.webhooks.delete(res.body.id as string);
    }
    // Still refused: not in the list.
    expectRefused(
      await call("POST", "/webhooks", { url: "http://169.254.169.254/" }),
      "url",
      "link-local",
      "metadata",
    );
    const git = await call("POST", "/tasks", { repo: `http://127.0.0.1:${port}/repo.git`, prompt: "hi" });
    expect(git.status, JSON.stringify(git.body)).toBe(201);

    // Allowed by name when subscribed; the operator then takes loopback out of the list.
    const sub = await call("POST", "/webhooks", {
      url: `http://localhost:${port}/late`,
      events: ["task.queued"],
    });
    expect(sub.status, JSON.stringify(sub.body)).toBe(201);
    t.config.egress = { allow: [] };
    await t.restart();
    const task = await call("POST", "/tasks", { repo, prompt: "say hi" });
    expect(task.status, JSON.stringify(task.body)).toBe(201);
    const hitsBefore = hits;
    const d = await waitFor(
      async () =>
        (await t.client.webhooks.deliveries(sub.body.id as string)).items.find((x) => x.status === "failed"),
      60_000,
      "the delivery to fail",
    );
    expect(d).toMatchObject({ status: "failed", lastStatusCode: null, lastError: "destination not allowed" });
    expect(d.attemptLog.map((a) => a.error)).toEqual(["destination not allowed", "destination not allowed"]);
    expect(hits).toBe(hitsBefore);
  });
});
