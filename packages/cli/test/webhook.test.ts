import { createHmac } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Webhook, WebhookDelivery } from "@flotilla/contracts";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { makeRepo, startTestServer, type TestServer, waitFor } from "../../../test/support.ts";
import { scenario } from "../../server/test/scenario.ts";
import { killChildren, runCli } from "./cli.ts";

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  raw: string;
  event: string;
}

let t: TestServer;
let conn: string[];
let receiver: Server;
let base: string;
const received: Received[] = [];

beforeAll(async () => {
  t = await startTestServer({ scenario });
  conn = ["--server", t.url, "--token", t.token];
  // A real HTTP receiver on 127.0.0.1 that accepts everything.
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString("utf8");
      received.push({ path: req.url ?? "", headers: req.headers, raw, event: JSON.parse(raw).event });
      res.writeHead(200).end("ok");
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
});
afterEach(() => killChildren());
afterAll(async () => {
  killChildren();
  await t?.close();
  await new Promise<void>((r) => (receiver ? receiver.close(() => r()) : r()));
});

/** Recomputes the signature from the secret the CLI printed, independently of the server's code. */
function signedWith(r: Received, secret: string): boolean {
  const ts = r.headers["x-flotilla-timestamp"] as string;
  const expected = `sha256=${createHmac("sha256", secret).update(`${ts}.${r.raw}`).digest("hex")}`;
  return r.headers["x-flotilla-signature"] === expected;
}

const list = async (): Promise<Webhook[]> =>
  JSON.parse((await runCli(["webhook", "ls", "--json", ...conn])).stdout);

describe("webhook create, ls, rm", () => {
  it("create prints the secret once; ls lists the subscription without it; rm deletes it", async () => {
    const r = await runCli(["webhook", "create", `${base}/gone`, ...conn]);
    expect(r.code, r.stderr).toBe(0);
    const id = /created webhook (whk_\w+) → /.exec(r.stdout)![1]!;
    const secret = /secret (whsec_\S+)/.exec(r.stdout)![1]!;
    expect(r.stdout).toContain("events task.*, session.status, budget.warning · every project");
    expect(r.stdout).toContain("shown only this once");

    const ls = await runCli(["webhook", "ls", ...conn]);
    expect(ls.stdout).toMatch(/^ID\s+URL\s+PROJECT\s+EVENTS\s+AGE/);
    expect(ls.stdout).toMatch(new RegExp(`${id}\\s+${base}/gone\\s+all\\s+task\\.\\*,session\\.status`));
    expect(ls.stdout).not.toContain(secret);

    const rm = await runCli(["webhook", "rm", id, ...conn]);
    expect(rm.code).toBe(0);
    expect(rm.stdout.trim()).toBe(`deleted webhook ${id} (${base}/gone)`);
    expect((await list()).map((w) => w.id)).not.toContain(id);
    const again = await runCli(["webhook", "rm", id, ...conn]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^error not_found: no webhook whk_\w+/);
  });

  it("refuses a bad URL or event before or at the server, naming it", async () => {
    const badEvent = await runCli(["webhook", "create", `${base}/x`, "--event", "task.nope", ...conn]);
    expect(badEvent.code).toBe(1);
    expect(badEvent.stderr).toMatch(/--event <pattern>.*invalid\. expected one of task\.\*/);
    const badUrl = await runCli(["webhook", "create", "file:///etc/passwd", ...conn]);
    expect(badUrl.code).toBe(1);
    expect(badUrl.stderr).toMatch(/^error invalid_request: .*\(field: url\)/);
  });
});

describe("deliveries", () => {
  it("after a task ran: webhook deliveries and task deliveries show what was sent, signed with the printed secrets", async () => {
    const created = await runCli(
      [
        "webhook",
        "create",
        `${base}/hooks`,
        "--event",
        "task.queued,task.running",
        "--event",
        "task.succeeded",
        ...conn,
      ],
      {},
    );
    expect(created.code, created.stderr).toBe(0);
    const hook = /created webhook (whk_\w+)/.exec(created.stdout)![1]!;
    const secret = /secret (whsec_\S+)/.exec(created.stdout)![1]!;
    expect(created.stdout).toContain("events task.queued, task.running, task.succeeded");

    const run = await runCli(
      [
        "task",
        "submit",
        "write hello please",
        "--repo",
        makeRepo(),
        "--webhook",
        `${base}/own`,
        "--wait",
        ...conn,
      ],
      { timeoutMs: 240_000 },
    );
    expect(run.code, run.stdout).toBe(0);
    const taskId = /\btsk_\w+/.exec(run.stdout)![0];

    // Deliveries go out after the transitions commit: wait for the receiver, not for time.
    const want = ["task.queued", "task.running", "task.succeeded"];
    await waitFor(
      async () =>
        want.every((e) => received.some((r) => r.path === "/hooks" && r.event === e)) &&
        want.every((e) => received.some((r) => r.path === "/own" && r.event === e)),
      60_000,
      "every task event at both receivers",
    );
    for (const r of received.filter((x) => x.path === "/hooks")) expect(signedWith(r, secret)).toBe(true);
    // A task's own --webhook is signed with the organisation's secret, which `webhook secret` prints.
    const orgSecret = (await runCli(["webhook", "secret", ...conn])).stdout.trim();
    expect(orgSecret).toMatch(/^whsec_/);
    for (const r of received.filter((x) => x.path === "/own")) expect(signedWith(r, orgSecret)).toBe(true);

    const table = await runCli(["webhook", "deliveries", hook, ...conn]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^ID\s+EVENT\s+STATUS\s+ATTEMPTS\s+LAST\s+AGE\n/);
    for (const e of want)
      expect(table.stdout).toMatch(new RegExp(`dlv_\\w+\\s+${e}\\s+delivered\\s+1\\s+200\\s`));

    const json = JSON.parse((await runCli(["webhook", "deliveries", hook, "--json", ...conn])).stdout) as {
      items: WebhookDelivery[];
    };
    expect(json.items.map((d) => d.event).sort()).toEqual([...want].sort());
    expect(json.items.every((d) => d.taskId === taskId && d.status === "delivered")).toBe(true);

    // The task's view: both targets, the subscription and the task's own webhook.
    const mine = await runCli(["task", "deliveries", taskId, ...conn]);
    expect(mine.code).toBe(0);
    expect(mine.stdout).toMatch(/TARGET\n/);
    expect(mine.stdout).toMatch(
      new RegExp(`task\\.succeeded\\s+delivered\\s+1\\s+200\\s+\\S+\\s+${hook} ${base}/hooks`),
    );
    expect(mine.stdout).toMatch(
      new RegExp(`task\\.succeeded\\s+delivered\\s+1\\s+200\\s+\\S+\\s+task webhook ${base}/own`),
    );
    expect(json.items.length).toBeLessThan(mine.stdout.trim().split("\n").length - 1);
  });
});
