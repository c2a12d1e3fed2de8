import { randomBytes } from "node:crypto";
import { type AuditEvent, FlotillaClient } from "@flotilla/client";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  collectUntil,
  makeRepo,
  startTestServer,
  type TestServer,
  untilTurnFinished,
} from "../../../test/support.ts";
import { runCli } from "../../cli/test/cli.ts";
import { hashOf } from "../src/audit/audit.ts";

/**
 * The audit log: actions through the API leave one row each (actor, action, target, outcome, the
 * request's id as the response echoed it, the caller's address), written with the action or not at
 * all; concurrent actions leave an unbroken chain; and a row altered, forged in the middle or
 * deleted in the database by its superuser (trigger off) is found by `GET /audit/verify` and
 * `flotilla audit verify`, naming the row.
 */

const ORG = "org_default";
let t: TestServer;
let db: pg.Client;
let adminId: string;

beforeAll(async () => {
  t = await startTestServer({ scenario: { rules: [], default: [{ text: "ok" }] } });
  db = new pg.Client({ connectionString: t.db });
  await db.connect();
  adminId = (await t.client.tokens.list()).find((x) => x.role === "admin")!.id;
}, 120_000);

afterAll(async () => {
  await db?.end();
  await t?.close();
});

/** Every row of the org, oldest first, as the API shows them. */
async function all(): Promise<AuditEvent[]> {
  const out: AuditEvent[] = [];
  let cursor: string | undefined;
  do {
    const page = await t.client.audit.list({ limit: 500, ...(cursor ? { cursor } : {}) });
    out.push(...page.items);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return out.reverse();
}

const one = async (action: string, targetId?: string) => {
  const rows = (await all()).filter((e) => e.action === action && (!targetId || e.targetId === targetId));
  expect(rows, `${action} ${targetId ?? ""}`).toHaveLength(1);
  return rows[0]!;
};

const LOOPBACK = /^(::ffff:)?127\.0\.0\.1$|^::1$/;

describe("audit log", () => {
  it("records each action with its actor, target, outcome, request id and address", {
    timeout: 240_000,
  }, async () => {
    // A caller's own request id is kept and echoed.
    const made = await fetch(`${t.url}/tokens`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${t.token}`,
        "content-type": "application/json",
        "x-request-id": "test-token-create-1",
      },
      body: JSON.stringify({ name: "audited bot", role: "member" }),
    });
    expect(made.status).toBe(201);
    expect(made.headers.get("x-request-id")).toBe("test-token-create-1");
    const bot = (await made.json()) as { token: string; info: { id: string } };
    expect(await one("token.create", bot.info.id)).toMatchObject({
      actor: adminId,
      actorLabel: "admin (first boot)",
      targetType: "token",
      outcome: "ok",
      requestId: "test-token-create-1",
      detail: { name: "audited bot", role: "member" },
    });
    expect((await one("token.create", bot.info.id)).ip).toMatch(LOOPBACK);

    // Otherwise the server makes one, and the row carries what the response said.
    const revoked = await t.client.raw("DELETE", `/tokens/${bot.info.id}`);
    const revokeId = revoked.headers.get("x-request-id");
    expect(revokeId).toMatch(/^req_/);
    expect(await one("token.revoke", bot.info.id)).toMatchObject({ actor: adminId, requestId: revokeId });

    // A refused login: denied, nobody, the token's prefix only.
    const bad = `flt_${randomBytes(16).toString("hex")}`;
    const refused = await fetch(`${t.url}/auth/session`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": "test-login-bad" },
      body: JSON.stringify({ token: bad }),
    });
    expect(refused.status).toBe(401);
    const failed = await one("auth.login_failed");
    expect(failed).toMatchObject({ actor: "anonymous", outcome: "denied", requestId: "test-login-bad" });
    expect(failed.ip).toMatch(LOOPBACK);
    expect(JSON.stringify(failed)).not.toContain(bad);
    const login = await fetch(`${t.url}/auth/session`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": "test-login-good" },
      body: JSON.stringify({ token: t.token }),
    });
    expect(login.status).toBe(200);
    const cookies = login.headers
      .getSetCookie()
      .map((c) => c.split(";")[0])
      .join("; ");
    const logout = await fetch(`${t.url}/auth/logout`, {
      method: "POST",
      headers: { cookie: cookies, "x-request-id": "test-logout" },
    });
    expect(logout.status).toBe(200);
    expect(await one("auth.logout")).toMatchObject({ actor: adminId, requestId: "test-logout" });
    expect(await one("auth.login")).toMatchObject({
      actor: adminId,
      outcome: "ok",
      requestId: "test-login-good",
    });

    // A session made and deleted.
    const created = await t.client.raw("POST", "/sessions", { repo: makeRepo(), prompt: "hello" });
    const sid = (created.data as { id: string }).id;
    expect(await one("session.create", sid)).toMatchObject({
      actor: adminId,
      targetType: "session",
      requestId: created.headers.get("x-request-id"),
    });
    await collectUntil(t.client, sid, untilTurnFinished(), { timeoutMs: 180_000 });
    const deleted = await t.client.raw("DELETE", `/sessions/${sid}`);
    expect(await one("session.delete", sid)).toMatchObject({
      actor: adminId,
      requestId: deleted.headers.get("x-request-id"),
    });

    // A secret: its name, never its value.
    const value = `audit-secret-${randomBytes(8).toString("hex")}`;
    const set = await t.client.raw("POST", "/secrets", { name: "AUDITED_SECRET", value });
    const secretId = (set.data as { id: string }).id;
    expect(await one("secret.set", secretId)).toMatchObject({
      actor: adminId,
      requestId: set.headers.get("x-request-id"),
      detail: { name: "AUDITED_SECRET", projectId: null },
    });

    // A webhook.
    const hook = await t.client.raw("POST", "/webhooks", { url: "http://127.0.0.1:9/hook" });
    const hookId = (hook.data as { id: string }).id;
    expect(await one("webhook.create", hookId)).toMatchObject({
      actor: adminId,
      requestId: hook.headers.get("x-request-id"),
      detail: { url: "http://127.0.0.1:9/hook" },
    });

    const { rows } = await db.query("select x::text as row from audit_events x");
    expect(rows.map((r) => r.row).join("\n")).not.toContain(value);
    expect(await t.client.audit.verify()).toMatchObject({ ok: true });

    // Filters: by action prefix, actor, target, outcome.
    const tokens = await t.client.audit.list({ action: "token." });
    expect(new Set(tokens.items.map((e) => e.action.split(".")[0]))).toEqual(new Set(["token"]));
    expect((await t.client.audit.list({ outcome: "denied" })).items.map((e) => e.action)).toEqual([
      "auth.login_failed",
    ]);
    expect((await t.client.audit.list({ target: sid })).items.map((e) => e.action)).toEqual([
      "session.delete",
      "session.create",
    ]);
    expect((await t.client.audit.list({ actor: "anonymous" })).items).toHaveLength(1);

    // The export is every row, oldest first, as JSON lines; the CLI's too.
    const lines: string[] = [];
    for await (const l of t.client.audit.export()) lines.push(l);
    expect(lines.map((l) => JSON.parse(l))).toEqual(await all());
    const conn = ["--server", t.url, "--token", t.token];
    const exported = await runCli(["audit", "export", "--action", "session.", ...conn]);
    expect(exported.code, exported.stderr).toBe(0);
    expect(
      exported.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).action),
    ).toEqual(["session.create", "session.delete"]);
    const ls = await runCli(["audit", "ls", "--action", "webhook.", ...conn]);
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout).toMatch(/^SEQ +AGE +ACTOR +ACTION +TARGET +OUTCOME/m);
    expect(ls.stdout).toContain(hookId);
  });

  it("an action whose transaction fails leaves no row; concurrent ones leave an unbroken chain", async () => {
    const before = await all();
    // The token's insert is refused at commit, after its audit row was written in the same transaction.
    await db.query(`create function refuse_token() returns trigger language plpgsql as $$
      begin raise exception 'refused for the test'; end $$`);
    await db.query(`create constraint trigger refuse_token after insert on tokens
      deferrable initially deferred for each row execute function refuse_token()`);
    try {
      await expect(t.client.tokens.create("doomed", "member")).rejects.toMatchObject({ code: "internal" });
    } finally {
      await db.query("drop trigger refuse_token on tokens");
      await db.query("drop function refuse_token()");
    }
    expect(await all()).toEqual(before);
    expect(await t.client.audit.verify()).toMatchObject({ ok: true, headSeq: before.at(-1)!.seq });

    const made = await Promise.all(
      Array.from({ length: 16 }, (_, i) => t.client.tokens.create(`concurrent ${i}`, "member")),
    );
    const after = await all();
    expect(after.map((e) => e.seq)).toEqual(after.map((_, i) => i + 1));
    for (const m of made) await one("token.create", m.info.id);
    expect(await t.client.audit.verify()).toEqual({ ok: true, checked: after.length, headSeq: after.length });
  });

  it("refuses updates and deletes; a member may not read it, and a member's refused action is on record", async () => {
    await expect(db.query("update audit_events set detail = '{}' where seq = 1")).rejects.toThrow(
      /append-only/,
    );
    await expect(db.query("delete from audit_events where seq = 1")).rejects.toThrow(/append-only/);
    const member = await t.client.tokens.create("audit member", "member");
    const asMember = new FlotillaClient({ baseUrl: t.url, token: member.token });
    await expect(asMember.audit.list()).rejects.toMatchObject({ code: "forbidden", status: 403 });
    await expect(asMember.audit.verify()).rejects.toMatchObject({ code: "forbidden" });
    const lines = async () => {
      for await (const _ of asMember.audit.export()) return;
    };
    await expect(lines()).rejects.toMatchObject({ code: "forbidden" });

    // An admin-only action a member tries is refused, and on record as denied.
    await expect(asMember.tokens.create("sneaky", "admin")).rejects.toMatchObject({ code: "forbidden" });
    const denied = (await t.client.audit.list({ outcome: "denied", actor: member.info.id })).items;
    expect(denied).toMatchObject([{ action: "token.create", outcome: "denied", targetId: null }]);
  });

  it("verify names the row altered, forged or deleted by the database's superuser", {
    timeout: 180_000,
  }, async () => {
    await db.query("create temp table snap as select * from audit_events");
    await db.query("create temp table snap_head as select * from audit_heads");
    const n = Number(
      (await db.query("select max(seq) as n from audit_events where org_id = $1", [ORG])).rows[0].n,
    );
    expect(n).toBeGreaterThan(8);
    const k = Math.floor(n / 2);
    const asSuperuser = async (sql: string, args: unknown[] = []) => {
      await db.query("begin");
      await db.query("set local session_replication_role = replica");
      await db.query(sql, args);
      await db.query("commit");
    };
    const restore = () =>
      asSuperuser(`
        delete from audit_events;
        insert into audit_events select * from snap;
        update audit_heads h set last_seq = s.last_seq, last_hash = s.last_hash from snap_head s where h.org_id = s.org_id`);
    const conn = ["--server", t.url, "--token", t.token];
    const caught = async (seq: number, reason: RegExp) => {
      const v = await t.client.audit.verify();
      expect(v).toMatchObject({ ok: false, firstBadSeq: seq });
      expect(v.reason).toMatch(reason);
      const cli = await runCli(["audit", "verify", ...conn]);
      expect(cli.code, cli.stderr).toBe(1);
      expect(cli.stdout).toContain(`tampered at seq ${seq}:`);
      await restore();
      expect(await t.client.audit.verify()).toMatchObject({ ok: true, headSeq: n });
    };
    const ok = await runCli(["audit", "verify", ...conn]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`audit log intact: ${n} rows`);

    // Altered: one row's detail.
    await asSuperuser(
      `update audit_events set detail = detail || '{"note":"nothing to see"}' where org_id = $1 and seq = $2`,
      [ORG, k],
    );
    await caught(k, /row \d+ was altered/);

    // Forged: the rows from k on moved up one, a row put at k that links to k-1 and hashes right.
    const prev = (
      await db.query("select hash from audit_events where org_id = $1 and seq = $2", [ORG, k - 1])
    ).rows[0].hash as string;
    const forged = {
      org_id: ORG,
      seq: k,
      at: new Date(),
      actor: adminId,
      actor_label: "admin (first boot)",
      action: "token.revoke",
      target_type: "token",
      target_id: "tok_nobody",
      outcome: "ok" as const,
      request_id: null,
      ip: "127.0.0.1",
      detail: {},
      prev_hash: prev,
    };
    await asSuperuser("update audit_events set seq = -seq where org_id = $1 and seq >= $2", [ORG, k]);
    await asSuperuser("update audit_events set seq = -seq + 1 where org_id = $1 and seq < 0", [ORG]);
    await asSuperuser(
      `insert into audit_events (org_id, seq, at, actor, actor_label, action, target_type, target_id, outcome, request_id, ip, detail, prev_hash, hash)
       values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
      [...Object.values(forged), hashOf(forged)].map((v, i) => (i === 11 ? JSON.stringify(v) : v)),
    );
    await caught(k, new RegExp(`row ${k} was inserted`));

    // Deleted: one row from the middle, then the last one.
    await asSuperuser("delete from audit_events where org_id = $1 and seq = $2", [ORG, k]);
    await caught(k, new RegExp(`row ${k} is missing`));
    await asSuperuser("delete from audit_events where org_id = $1 and seq = $2", [ORG, n]);
    await caught(n, new RegExp(`rows ${n} to ${n} are missing`));
  });
});
