import { FlotillaClient } from "@flotilla/client";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../../../test/support.ts";
import { scenario } from "./scenario.ts";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ scenario });
});
afterAll(async () => {
  await t?.close();
});

describe("tokens", () => {
  it("first boot wrote the admin token 0600; tokens are stored only as hashes", async () => {
    const { statSync } = await import("node:fs");
    expect(statSync(`${t.home}/admin.token`).mode & 0o777).toBe(0o600);
    const c = new pg.Client({ connectionString: t.db });
    await c.connect();
    const rows = (await c.query("select * from tokens")).rows;
    await c.end();
    expect(rows).toHaveLength(1);
    expect(JSON.stringify(rows)).not.toContain(t.token);
    expect(rows[0].hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it("create, use, list and revoke a token; a revoked token is refused", async () => {
    const created = await t.client.tokens.create("ci bot", "member");
    expect(created.token).toMatch(/^flt_/);
    expect(created.info.role).toBe("member");
    const bot = new FlotillaClient({ baseUrl: t.url, token: created.token });
    expect((await bot.sessions.list()).items).toBeInstanceOf(Array);
    const list = await t.client.tokens.list();
    const listed = list.find((x) => x.id === created.info.id)!;
    expect(listed.lastUsedAt).not.toBeNull();
    expect(JSON.stringify(list)).not.toContain(created.token);
    // Only admins manage tokens.
    await expect(bot.tokens.create("sneaky", "admin")).rejects.toMatchObject({
      code: "forbidden",
      status: 403,
    });
    const revoked = await t.client.tokens.revoke(created.info.id);
    expect(revoked.revokedAt).not.toBeNull();
    await expect(bot.sessions.list()).rejects.toMatchObject({ code: "unauthorized", status: 401 });
  });

  it("public routes need no token; everything else does", async () => {
    for (const path of ["/healthz", "/readyz", "/openapi.json"])
      expect((await fetch(`${t.url}${path}`)).status).toBe(200);
    for (const path of ["/sessions", "/models", "/harnesses", "/tokens"]) {
      const res = await fetch(`${t.url}${path}`);
      expect(res.status).toBe(401);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("unauthorized");
    }
  });

  it("the OpenAPI document describes the routes and the bearer scheme", async () => {
    // biome-ignore lint/suspicious/noExplicitAny: an OpenAPI document, walked by path
    const doc: any = await (await fetch(`${t.url}/openapi.json`)).json();
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        "/sessions",
        "/sessions/{id}",
        "/sessions/{id}/events",
        "/sessions/{id}/permissions/{requestId}",
        "/tokens",
      ]),
    );
    expect(doc.components.securitySchemes.bearer).toEqual({ type: "http", scheme: "bearer" });
    expect(doc.components.schemas.CreateSession.required).toEqual(expect.arrayContaining(["repo", "prompt"]));
  });
});
