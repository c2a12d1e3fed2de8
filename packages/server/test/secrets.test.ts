import { createHmac, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { FlotillaClient, type SessionEvent } from "@flotilla/client";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  collectUntil,
  makeRepo,
  startTestServer,
  type TestServer,
  untilTurnFinished,
  waitFor,
} from "../../../test/support.ts";
import { runCli } from "../../cli/test/cli.ts";

/**
 * The secret store (envelope encryption under a master key): a provider key set through the API
 * reaches the model gateway at once and drives a session; its value is never returned and is
 * nowhere in the database in the clear; the master key is rotated while a session streams, the
 * session does not notice, and afterwards no row is wrapped with the old key.
 */

const KEY = `sk-stored-${randomBytes(12).toString("hex")}`;
const SLOW = Array.from({ length: 40 }, (_, i) => `w${i}`).join(" ");

let t: TestServer;
let db: pg.Client;

beforeAll(async () => {
  t = await startTestServer({
    scenario: {
      rules: [{ match: "^slow", steps: [{ text: SLOW, chunkDelayMs: 50 }] }],
      default: [{ text: "ok" }],
    },
  });
  // The provider's key is named; no environment holds it: the store will.
  t.server.services.config.providers.scripted!.apiKeyEnv = "SCRIPTED_STORED_KEY";
  await t.restart();
  db = new pg.Client({ connectionString: t.db });
  await db.connect();
}, 120_000);

afterAll(async () => {
  await db?.end();
  await t?.close();
});

const masterKeys = () =>
  readFileSync(join(t.home, "master.key"), "utf8")
    .split("\n")
    .filter((l) => l.trim());

describe("secrets", () => {
  it("a provider key set through the API drives a session at once; it is never returned nor stored in the clear", {
    timeout: 240_000,
  }, async () => {
    const stored = await t.client.secrets.set({ name: "SCRIPTED_STORED_KEY", value: KEY });
    expect(stored).toMatchObject({ name: "SCRIPTED_STORED_KEY", scope: "org", projectId: null });
    expect(JSON.stringify(stored)).not.toContain(KEY);
    const listed = await t.client.secrets.list();
    expect(listed.map((x) => x.name)).toEqual(["SCRIPTED_STORED_KEY"]);
    expect(JSON.stringify(listed)).not.toContain(KEY);

    const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "hello" });
    await collectUntil(t.client, s.id, untilTurnFinished(), { timeoutMs: 180_000 });
    expect(t.model.requests.filter((r) => r.kind === "agent").map((r) => r.apiKey)).toEqual([KEY]);
    expect((await t.client.secrets.list())[0]!.lastUsedAt).not.toBeNull();

    const { rows } = await db.query("select x::text as row from secrets x");
    expect(rows).toHaveLength(1);
    expect(rows[0].row).not.toContain(KEY);
    expect(rows[0].row).not.toContain(Buffer.from(KEY).toString("hex"));
    expect(readFileSync(t.logFile, "utf8")).not.toContain(KEY);

    // Bad input names its field and changes nothing; a member may not touch secrets.
    const bad = await fetch(`${t.url}/secrets`, {
      method: "POST",
      headers: { authorization: `Bearer ${t.token}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "9 lives", value: "x" }),
    });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error.field).toBe("name");
    const member = (await t.client.tokens.create("mallory", "member")).token;
    const asMember = new FlotillaClient({ baseUrl: t.url, token: member });
    await expect(asMember.secrets.list()).rejects.toMatchObject({ code: "forbidden" });
    expect(await t.client.secrets.list()).toHaveLength(1);
  });

  it("the master key rotates while a session streams: the turn finishes untouched, every data key is re-wrapped, the old key is gone", {
    timeout: 240_000,
  }, async () => {
    await t.client.secrets.set({ name: "ANOTHER_SECRET", value: `other-${randomBytes(8).toString("hex")}` });
    const before = masterKeys();
    expect(before).toHaveLength(1);
    const { rows: old } = await db.query("select id, key_id, data_key from secrets order by id");
    expect(new Set(old.map((r) => r.key_id)).size).toBe(1);

    const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "slow please" });
    await collectUntil(t.client, s.id, (e) => e.type === "text.delta", { timeoutMs: 180_000 });
    const rotated = await t.client.secrets.rotateMaster();
    expect(rotated.rewrapped).toBe(2);
    expect(rotated.keyId).not.toBe(old[0].key_id);
    const events = await collectUntil(t.client, s.id, untilTurnFinished(), { timeoutMs: 120_000 });
    const fin = events.find(
      (e): e is Extract<SessionEvent, { type: "turn.finished" }> => e.type === "turn.finished",
    );
    expect(fin?.data.outcome).toBe("success");
    const text = events.find((e) => e.type === "text.completed");
    expect(text?.type === "text.completed" && text.data.text).toBe(SLOW);

    // Every row on the new key, each data key wrapped anew; the key file holds the new key only.
    const { rows: now } = await db.query("select id, key_id, data_key from secrets order by id");
    expect(now.map((r) => r.key_id)).toEqual([rotated.keyId, rotated.keyId]);
    for (const [i, r] of now.entries()) expect(Buffer.compare(r.data_key, old[i].data_key)).not.toBe(0);
    const after = masterKeys();
    expect(after).toHaveLength(1);
    expect(after[0]).not.toBe(before[0]);

    // And the store still opens: after a restart (the key read back from its file) a new session
    // gets the provider key from it.
    await t.restart();
    const again = await t.client.sessions.create({ repo: makeRepo(), prompt: "hello" });
    await collectUntil(t.client, again.id, untilTurnFinished(), { timeoutMs: 180_000 });
    expect(t.model.requests.filter((r) => r.kind === "agent").at(-1)?.apiKey).toBe(KEY);
  });

  it("the CLI sets, lists, rotates and removes secrets, never printing a value", {
    timeout: 120_000,
  }, async () => {
    const conn = ["--server", t.url, "--token", t.token];
    const value = `cli-${randomBytes(8).toString("hex")}`;
    const set = await runCli(["secrets", "set", "CLI_SECRET", "--value", value, ...conn]);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toMatch(/^✓ stored CLI_SECRET \(org, sec_\w+\)/);
    const ls = await runCli(["secrets", "ls", ...conn]);
    expect(ls.stdout).toMatch(/^ID +NAME +SCOPE +UPDATED +LAST USED/m);
    expect(ls.stdout).toMatch(/^sec_\w+ +CLI_SECRET +org /m);
    expect(ls.stdout + set.stdout).not.toContain(value);
    const rotated = JSON.parse((await runCli(["secrets", "rotate-master", "--json", ...conn])).stdout);
    expect(rotated.rewrapped).toBe(3);
    const id = (await t.client.secrets.list()).find((x) => x.name === "CLI_SECRET")!.id;
    expect((await runCli(["secrets", "rm", id, ...conn])).stdout.trim()).toBe("deleted CLI_SECRET");
    expect((await t.client.secrets.list()).map((x) => x.name)).not.toContain("CLI_SECRET");
  });

  it("webhook signing secrets an older version kept in the clear move into the store at boot; deliveries stay signed with them", {
    timeout: 240_000,
  }, async () => {
    const received: { path: string; raw: string; headers: Record<string, unknown> }[] = [];
    const receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        received.push({
          path: req.url ?? "",
          raw: Buffer.concat(chunks).toString("utf8"),
          headers: req.headers,
        });
        res.writeHead(200).end("ok");
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    try {
      // As an older Flotilla left them: a subscription's secret and the organisation's, in plain text.
      const subSecret = `whsec_old-${randomBytes(12).toString("hex")}`;
      const orgSecret = `whsec_org-${randomBytes(12).toString("hex")}`;
      const { rows: orgs } = await db.query("select id from orgs");
      const org = orgs[0].id as string;
      await db.query(
        `insert into webhook_subscriptions (id, org_id, url, events, secret) values ('whk_old', $1, $2, '{task.*}', $3)`,
        [org, `${base}/sub`, subSecret],
      );
      await db.query(
        `insert into webhook_secrets (org_id, secret) values ($1, $2)
         on conflict (org_id) do update set secret = excluded.secret`,
        [org, orgSecret],
      );
      await t.restart();

      // Moved: nowhere in the database in the clear; the store holds them, by name.
      for (const v of [subSecret, orgSecret]) {
        const { rows: tables } = await db.query(
          "select tablename from pg_tables where schemaname = 'public' order by tablename",
        );
        for (const { tablename } of tables) {
          const { rows } = await db.query(
            `select count(*)::int as n from "${tablename}" x where x::text like $1`,
            [`%${v}%`],
          );
          expect(rows[0].n, `table ${tablename}`).toBe(0);
        }
      }
      const names = (await t.client.secrets.list()).map((x) => x.name);
      expect(names).toEqual(expect.arrayContaining(["webhook.org", "webhook.whk_old"]));
      expect((await t.client.webhooks.secret()).secret).toBe(orgSecret);

      // A task with its own URL: both the moved subscription and the task's URL get signed deliveries.
      const { task } = await t.client.tasks.submit({
        repo: makeRepo(),
        prompt: "hello",
        webhook: `${base}/task`,
      });
      const got = await waitFor(
        async () => {
          const at = (path: string) =>
            received.filter((r) => r.path === path && JSON.parse(r.raw).data.to === "succeeded");
          return at("/sub").length >= 1 && at("/task").length >= 1 && received;
        },
        180_000,
        `task ${task.id}'s deliveries`,
      );
      for (const r of got) {
        const secret = r.path === "/sub" ? subSecret : orgSecret;
        const ts = r.headers["x-flotilla-timestamp"] as string;
        expect(r.headers["x-flotilla-signature"]).toBe(
          `sha256=${createHmac("sha256", secret).update(`${ts}.${r.raw}`).digest("hex")}`,
        );
      }
      // Deleting the subscription deletes its secret.
      await t.client.webhooks.delete("whk_old");
      expect((await t.client.secrets.list()).map((x) => x.name)).not.toContain("webhook.whk_old");
    } finally {
      await new Promise<void>((r) => receiver.close(() => r()));
    }
  });

  it("a project's own provider key is used for its calls, the org's for everyone else's, at once and until it is deleted", {
    timeout: 240_000,
  }, async () => {
    const projectKey = `sk-project-${randomBytes(12).toString("hex")}`;
    const keysSince = (n: number) =>
      t.model.requests
        .slice(n)
        .filter((r) => r.kind === "agent")
        .map((r) => r.apiKey);
    // The org's key (as the first test set it; set again so this test stands alone).
    await t.client.secrets.set({ name: "SCRIPTED_STORED_KEY", value: KEY });
    const mine = await t.client.sessions.create({ repo: makeRepo(), prompt: "hello" });
    await collectUntil(t.client, mine.id, untilTurnFinished(1), { timeoutMs: 180_000 });
    const stored = await t.client.secrets.set({
      name: "SCRIPTED_STORED_KEY",
      value: projectKey,
      projectId: mine.projectId,
    });
    expect(stored).toMatchObject({ scope: "project", projectId: mine.projectId });

    let at = t.model.requests.length;
    await t.client.sessions.send(mine.id, { text: "hello again" });
    await collectUntil(t.client, mine.id, untilTurnFinished(2), { timeoutMs: 180_000 });
    expect(keysSince(at)).toEqual([projectKey]);

    // Another project: the org's key.
    at = t.model.requests.length;
    const other = await t.client.sessions.create({ repo: makeRepo(), prompt: "hello" });
    await collectUntil(t.client, other.id, untilTurnFinished(1), { timeoutMs: 180_000 });
    expect(keysSince(at)).toEqual([KEY]);

    // Deleted: the project's calls go back to the org's key.
    await t.client.secrets.delete(stored.id);
    at = t.model.requests.length;
    await t.client.sessions.send(mine.id, { text: "and again" });
    await collectUntil(t.client, mine.id, untilTurnFinished(3), { timeoutMs: 180_000 });
    expect(keysSince(at)).toEqual([KEY]);
  });
});
