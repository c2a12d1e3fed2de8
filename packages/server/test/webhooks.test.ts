import { createHmac, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { FlotillaClient } from "@flotilla/client";
import type { Task, WebhookBody, WebhookDelivery } from "@flotilla/contracts";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeRepo, startTestServer, type TestServer, waitFor } from "../../../test/support.ts";
import { scenario } from "./scenario.ts";

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  raw: string;
  body: WebhookBody & { data: Record<string, unknown> };
}

/** A real HTTP receiver on 127.0.0.1; `respond` picks each request's status code. */
async function startReceiver(
  respond: (r: Received, all: Received[]) => number | Promise<number> = () => 200,
) {
  const all: Received[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      const raw = Buffer.concat(chunks).toString("utf8");
      const r: Received = { path: req.url ?? "", headers: req.headers, raw, body: JSON.parse(raw) };
      all.push(r);
      const status = await respond(r, all);
      res.writeHead(status, { "content-type": "text/plain" }).end(status === 200 ? "ok" : "receiver broke");
    });
  });
  await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    all,
    url: (path: string) => `${base}${path}`,
    on: (path: string) => all.filter((r) => r.path === path),
    close: () => new Promise<void>((res) => server.close(() => res())),
  };
}

/** Recomputes the signature independently of the server's code. */
function verify(r: Received, secret: string): void {
  const ts = r.headers["x-flotilla-timestamp"] as string;
  expect(ts).toMatch(/^\d+$/);
  expect(Math.abs(Date.now() / 1000 - Number(ts))).toBeLessThan(300);
  const expected = `sha256=${createHmac("sha256", secret).update(`${ts}.${r.raw}`).digest("hex")}`;
  expect(r.headers["x-flotilla-signature"]).toBe(expected);
  expect(r.headers["content-type"]).toBe("application/json");
  expect(r.headers["x-flotilla-event"]).toBe(r.body.event);
  expect(r.headers["x-flotilla-delivery"]).toBe(r.body.id);
}

const taskOf = (r: Received) => r.body.data.task as Task | undefined;

let t: TestServer;
let recv: Awaited<ReturnType<typeof startReceiver>>;
let db: pg.Client;
const flakyCalls = new Map<string, number>();

beforeAll(async () => {
  t = await startTestServer({ scenario });
  // /flaky answers 500 to a delivery's first two attempts, then 200.
  recv = await startReceiver((r) => {
    if (r.path !== "/flaky") return 200;
    const n = (flakyCalls.get(r.body.id) ?? 0) + 1;
    flakyCalls.set(r.body.id, n);
    return n <= 2 ? 500 : 200;
  });
  db = new pg.Client({ connectionString: t.db });
  await db.connect();
});
afterAll(async () => {
  await db?.end();
  await t?.close();
  await recv?.close();
});

async function settled(id: string): Promise<Task> {
  return waitFor(
    async () => {
      const task = await t.client.tasks.get(id);
      return ["succeeded", "failed", "cancelled", "timed_out", "dead"].includes(task.state)
        ? task
        : undefined;
    },
    90_000,
    `task ${id} to finish`,
  );
}

describe("webhooks", () => {
  it("a subscription receives a task's transitions and its session's status, each signed", async () => {
    const all = await t.client.webhooks.create({ url: recv.url("/all") });
    expect(all.secret).toMatch(/^whsec_/);
    expect(all.events).toEqual(["task.*", "session.status", "budget.warning"]);
    expect(all.projectId).toBeNull();

    const repo = makeRepo();
    const { task } = await t.client.tasks.submit({ repo, prompt: "say hi" });
    // Scoped to the task's project and one event; and one scoped to another project hears nothing.
    const scoped = await t.client.webhooks.create({
      url: recv.url("/scoped"),
      projectId: task.projectId,
      events: ["task.succeeded"],
    });
    const org = (await db.query("select id from orgs limit 1")).rows[0].id;
    const otherProject = `prj_${randomBytes(13).toString("hex").slice(0, 26)}`;
    await db.query("insert into projects (id, org_id, repo) values ($1, $2, '/elsewhere')", [
      otherProject,
      org,
    ]);
    const other = await t.client.webhooks.create({ url: recv.url("/other"), projectId: otherProject });

    const done = await settled(task.id);
    expect(done.state).toBe("succeeded");
    const mine = () => recv.on("/all").filter((r) => taskOf(r)?.id === task.id);
    await waitFor(
      async () => mine().some((r) => r.body.event === "task.succeeded"),
      20_000,
      "task.succeeded delivered",
    );
    const got = mine();
    expect(got.map((r) => r.body.event)).toEqual(["task.queued", "task.running", "task.succeeded"]);
    for (const r of got) verify(r, all.secret);
    expect(got[2]!.body.data).toMatchObject({ from: "running", to: "succeeded" });
    expect(taskOf(got[2]!)).toMatchObject({ id: task.id, state: "succeeded", sessionId: done.sessionId });
    expect(new Set(got.map((r) => r.body.id)).size).toBe(3);

    // The session's status changes come to the same subscription.
    const status = await waitFor(
      async () => {
        const s = recv
          .on("/all")
          .filter((r) => r.body.event === "session.status" && r.body.data.sessionId === done.sessionId);
        return s.some((r) => r.body.data.status === "idle") ? s : undefined;
      },
      20_000,
      "session.status delivered",
    );
    for (const r of status) verify(r, all.secret);
    expect(status[0]!.body.data).toMatchObject({ projectId: task.projectId });

    await waitFor(async () => recv.on("/scoped").length > 0, 20_000, "scoped delivery");
    const scopedGot = recv.on("/scoped");
    expect(scopedGot.map((r) => [r.body.event, taskOf(r)?.id])).toEqual([["task.succeeded", task.id]]);
    verify(scopedGot[0]!, scoped.secret);
    expect(recv.on("/other")).toEqual([]);

    // The delivery log, newest first; secrets are never listed.
    const log = await t.client.webhooks.deliveries(all.id);
    const forTask = log.items.filter((d) => d.taskId === task.id);
    expect(forTask.map((d) => d.event)).toEqual(["task.succeeded", "task.running", "task.queued"]);
    expect(
      forTask.every((d) => d.status === "delivered" && d.attempts === 1 && d.lastStatusCode === 200),
    ).toBe(true);
    const listed = await t.client.webhooks.list();
    expect(listed.map((w) => w.id)).toEqual([other.id, scoped.id, all.id]);
    expect(JSON.stringify(listed)).not.toContain("whsec_");

    for (const w of [all, scoped, other]) await t.client.webhooks.delete(w.id);
    expect(await t.client.webhooks.list()).toEqual([]);
    // Deleted, its log stays readable.
    expect((await t.client.webhooks.deliveries(all.id)).items.length).toBe(log.items.length);
  });

  it("a receiver that fails twice gets the same delivery three times; the log shows every attempt", async () => {
    const flaky = await t.client.webhooks.create({
      url: recv.url("/flaky"),
      events: ["task.queued"],
      secret: "a-secret-of-our-own-choosing",
    });
    expect(flaky.secret).toBe("a-secret-of-our-own-choosing");
    const { task } = await t.client.tasks.submit({ repo: makeRepo(), prompt: "say hi" });
    const d: WebhookDelivery = await waitFor(
      async () => {
        const items = (await t.client.webhooks.deliveries(flaky.id)).items;
        return items.find((x) => x.taskId === task.id && x.status !== "pending");
      },
      30_000,
      "flaky delivery settled",
    );
    expect(d).toMatchObject({
      event: "task.queued",
      status: "delivered",
      attempts: 3,
      lastStatusCode: 200,
      lastError: null,
      subscriptionId: flaky.id,
    });
    expect(d.attemptLog.map((a) => a.statusCode)).toEqual([500, 500, 200]);
    expect(d.attemptLog[0]!.error).toBe("HTTP 500");
    expect(d.deliveredAt).not.toBeNull();
    // Back-off between attempts: at least half the (test) base of 200 ms.
    const at = d.attemptLog.map((a) => Date.parse(a.at));
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(100);
    expect(at[2]! - at[1]!).toBeGreaterThanOrEqual(200);

    const sent = recv.on("/flaky").filter((r) => r.body.id === d.id);
    expect(sent).toHaveLength(3);
    expect(new Set(sent.map((r) => r.raw)).size).toBe(1); // the same body every time
    for (const r of sent) {
      expect(r.headers["x-flotilla-delivery"]).toBe(d.id);
      verify(r, flaky.secret);
    }
    // The task's own delivery log has it too.
    const byTask = await t.client.webhooks.taskDeliveries(task.id);
    expect(byTask.items.map((x) => x.id)).toContain(d.id);
    await t.client.webhooks.delete(flaky.id);
    await settled(task.id);
  });

  it("a task's own webhook URL receives its transitions, signed with the organisation's secret", async () => {
    const { task } = await t.client.tasks.submit({
      repo: makeRepo(),
      prompt: "say hi",
      webhook: recv.url("/task-hook"),
    });
    const done = await settled(task.id);
    await waitFor(
      async () => recv.on("/task-hook").some((r) => r.body.event === "task.succeeded"),
      20_000,
      "task hook succeeded",
    );
    const got = recv.on("/task-hook");
    expect(got.map((r) => [r.body.event, taskOf(r)?.id])).toEqual([
      ["task.queued", task.id],
      ["task.running", task.id],
      ["task.succeeded", task.id],
    ]);
    const { secret } = await t.client.webhooks.secret();
    for (const r of got) verify(r, secret);
    expect(taskOf(got[2]!)?.webhook).toBe(recv.url("/task-hook"));

    const log = await t.client.webhooks.taskDeliveries(done.id);
    expect(log.items.map((d) => [d.event, d.subscriptionId, d.status])).toEqual([
      ["task.succeeded", null, "delivered"],
      ["task.running", null, "delivered"],
      ["task.queued", null, "delivered"],
    ]);

    // Only admins read the organisation's secret.
    const member = await t.client.tokens.create("webhook member", "member");
    const asMember = new FlotillaClient({ baseUrl: t.url, token: member.token });
    await expect(asMember.webhooks.secret()).rejects.toMatchObject({ code: "forbidden", status: 403 });
  });

  it("rejects bad input with the offending field", async () => {
    const post = async (body: unknown) => {
      const res = await fetch(`${t.url}/webhooks`, {
        method: "POST",
        headers: { authorization: `Bearer ${t.token}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as { error: { code: string; field?: string } } };
    };
    for (const [body, field] of [
      [{ url: "not a url" }, "url"],
      [{ url: "file:///etc/passwd" }, "url"],
      [{ url: "http://127.0.0.1:1/x", events: ["task.nope"] }, "events.0"],
      [{ url: "http://127.0.0.1:1/x", events: [] }, "events"],
      [{ url: "http://127.0.0.1:1/x", secret: "short" }, "secret"],
      [{ url: "http://127.0.0.1:1/x", projectId: "prj_nope" }, "projectId"],
      [{ url: "http://127.0.0.1:1/x", extra: 1 }, "extra"],
    ] as const) {
      const res = await post(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error).toMatchObject({ code: "invalid_request", field });
    }
    await expect(t.client.webhooks.delete("whk_nope")).rejects.toMatchObject({ code: "not_found" });
    await expect(t.client.webhooks.deliveries("whk_nope")).rejects.toMatchObject({ code: "not_found" });
    await expect(t.client.webhooks.taskDeliveries("tsk_nope")).rejects.toMatchObject({ code: "not_found" });
    expect(await t.client.webhooks.list()).toEqual([]);
  });

  it("never logs a secret", async () => {
    const { secret } = await t.client.webhooks.secret();
    const log = readFileSync(t.logFile, "utf8");
    expect(log).toMatch(/webhook (delivered|attempt failed)/);
    expect(log).not.toContain(secret);
    expect(log).not.toContain("whsec_");
    expect(log).not.toContain("a-secret-of-our-own-choosing");
  });
});

describe("webhook dispatcher", () => {
  it("gives up after 8 attempts, records why each failed, and finishes an in-flight send on shutdown", async () => {
    // An API-only replica (no task runs) with a 10 ms back-off base: eight attempts take ~2 s.
    const api = await startTestServer({
      scenario,
      scheduler: { enabled: false },
      webhooks: { backoffBaseMs: 10 },
    });
    let slowArrived: () => void = () => {};
    const slowSeen = new Promise<void>((r) => (slowArrived = r));
    const rx = await startReceiver(async (r) => {
      if (r.path === "/down") return 503;
      if (r.path === "/slow") {
        slowArrived();
        await new Promise((res) => setTimeout(res, 700));
      }
      return 200;
    });
    const client = new pg.Client({ connectionString: api.db });
    await client.connect();
    try {
      const down = await api.client.webhooks.create({ url: rx.url("/down"), events: ["task.queued"] });
      // A port nothing listens on (fetch refuses well-known ports such as 1 outright: "bad port").
      const closed = createServer();
      await new Promise<void>((res) => closed.listen(0, "127.0.0.1", res));
      const port = (closed.address() as AddressInfo).port;
      await new Promise<void>((res) => closed.close(() => res()));
      const refused = await api.client.webhooks.create({
        url: `http://127.0.0.1:${port}/`,
        events: ["task.queued"],
      });
      await api.client.tasks.submit({ repo: makeRepo(), prompt: "say hi" });
      const settle = (id: string) =>
        waitFor(
          async () => (await api.client.webhooks.deliveries(id)).items.find((d) => d.status !== "pending"),
          30_000,
          `${id} settled`,
        );
      const [d, r] = await Promise.all([settle(down.id), settle(refused.id)]);
      expect(d).toMatchObject({ status: "failed", attempts: 8, lastStatusCode: 503, nextAttemptAt: null });
      expect(d.attemptLog.map((a) => a.statusCode)).toEqual(Array(8).fill(503));
      expect(rx.on("/down").filter((x) => x.body.id === d.id)).toHaveLength(8);
      expect(r).toMatchObject({
        status: "failed",
        attempts: 8,
        lastStatusCode: null,
        lastError: "no HTTP response",
      });

      // Shutdown while a receiver is still answering: the send completes and is recorded.
      await api.client.webhooks.create({ url: rx.url("/slow"), events: ["task.queued"] });
      const { task } = await api.client.tasks.submit({ repo: makeRepo(), prompt: "say hi" });
      await slowSeen;
      await api.close();
      const rows = (
        await client.query(
          "select status, attempts from webhook_deliveries where task_id = $1 and url like '%/slow'",
          [task.id],
        )
      ).rows;
      expect(rows).toEqual([{ status: "delivered", attempts: 1 }]);
    } finally {
      await client.end();
      await api.close();
      await rx.close();
    }
  });
});
