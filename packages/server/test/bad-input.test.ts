import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  collectUntil,
  makeRepo,
  startTestServer,
  type TestServer,
  tempDir,
  untilTurnFinished,
  waitFor,
} from "../../../test/support.ts";
import { scenario } from "./scenario.ts";

let t: TestServer;
let db: pg.Client;
beforeAll(async () => {
  t = await startTestServer({ scenario });
  db = new pg.Client({ connectionString: t.db });
  await db.connect();
});
afterAll(async () => {
  await db?.end();
  await t?.close();
});

async function counts() {
  const q = async (table: string) => Number((await db.query(`select count(*) from ${table}`)).rows[0].count);
  const ws = join(t.home, "workspaces");
  let dirs = 0;
  try {
    dirs = readdirSync(ws).length;
  } catch {}
  return {
    sessions: await q("sessions"),
    workspaces: await q("workspaces"),
    projects: await q("projects"),
    events: await q("events"),
    harnesses: await q("harnesses"),
    dirs,
  };
}

async function call(
  method: string,
  path: string,
  init: { body?: string; token?: string | null; headers?: Record<string, string> } = {},
) {
  const res = await fetch(`${t.url}${path}`, {
    method,
    headers: {
      ...(init.token === null ? {} : { authorization: `Bearer ${init.token ?? t.token}` }),
      ...(init.body !== undefined ? { "content-type": "application/json" } : {}),
      ...init.headers,
    },
    body: init.body,
  });
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text), text };
}

describe("bad input gets a clear error and changes nothing", () => {
  const notGit = tempDir("not-git");
  const cases: [string, () => Promise<{ status: number; body: any }>, number, string, string | undefined][] =
    [
      [
        "nonexistent repo",
        () => call("POST", "/sessions", { body: JSON.stringify({ repo: "/nope/not/here", prompt: "hi" }) }),
        422,
        "repo_not_found",
        "repo",
      ],
      [
        "a directory that is not git",
        () => call("POST", "/sessions", { body: JSON.stringify({ repo: notGit, prompt: "hi" }) }),
        422,
        "repo_not_git",
        "repo",
      ],
      [
        "missing prompt",
        () => call("POST", "/sessions", { body: JSON.stringify({ repo: makeRepo() }) }),
        400,
        "invalid_request",
        "prompt",
      ],
      [
        "blank prompt",
        () => call("POST", "/sessions", { body: JSON.stringify({ repo: makeRepo(), prompt: "   " }) }),
        400,
        "invalid_request",
        "prompt",
      ],
      [
        "unknown field",
        () =>
          call("POST", "/sessions", {
            body: JSON.stringify({ repo: makeRepo(), prompt: "hi", colour: "red" }),
          }),
        400,
        "invalid_request",
        "colour",
      ],
      [
        "bad model reference",
        () =>
          call("POST", "/sessions", {
            body: JSON.stringify({ repo: makeRepo(), prompt: "hi", model: "no-slash" }),
          }),
        400,
        "invalid_request",
        "model",
      ],
      [
        "base ref that names no commit",
        () =>
          call("POST", "/sessions", {
            body: JSON.stringify({ repo: makeRepo(), prompt: "hi", baseRef: "no-such-branch" }),
          }),
        400,
        "invalid_request",
        "baseRef",
      ],
      [
        "malformed JSON",
        () => call("POST", "/sessions", { body: '{"repo": "/tmp", "prompt": ' }),
        400,
        "invalid_json",
        "body",
      ],
      // Connection: close, because the server answers before reading the whole body and drops the socket.
      [
        "oversize body",
        () =>
          call("POST", "/sessions", {
            body: JSON.stringify({ repo: "/tmp", prompt: "x".repeat(2 * 1024 * 1024) }),
            headers: { connection: "close" },
          }),
        413,
        "body_too_large",
        "body",
      ],
      ["no token", () => call("GET", "/sessions", { token: null }), 401, "unauthorized", undefined],
      [
        "bad token",
        () =>
          call("POST", "/sessions", {
            token: "flt_not-a-real-token",
            body: JSON.stringify({ repo: makeRepo(), prompt: "hi" }),
          }),
        401,
        "unauthorized",
        undefined,
      ],
      ["unknown session id", () => call("GET", "/sessions/ses_doesnotexist"), 404, "not_found", "id"],
      [
        "message to an unknown session",
        () => call("POST", "/sessions/ses_doesnotexist/messages", { body: JSON.stringify({ text: "hi" }) }),
        404,
        "not_found",
        "id",
      ],
      ["bad list filter", () => call("GET", "/sessions?status=sleeping"), 400, "invalid_request", "status"],
      ["unknown route", () => call("GET", "/nothing-here"), 404, "not_found", undefined],
    ];

  for (const [name, run, status, code, field] of cases) {
    it(`${name} → ${status} ${code}`, async () => {
      const before = await counts();
      const res = await run();
      expect(res.status).toBe(status);
      expect(res.body.error.code).toBe(code);
      expect(typeof res.body.error.message).toBe("string");
      if (field) expect(res.body.error.field).toBe(field);
      expect(res.body.error).not.toHaveProperty("stack");
      expect(await counts()).toEqual(before);
    });
  }

  it("a session that is busy refuses a second message with session_busy", async () => {
    const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "hang until aborted" });
    await collectUntil(t.client, s.id, (e) => e.type === "text.delta");
    await expect(t.client.sessions.send(s.id, { text: "and another" })).rejects.toMatchObject({
      code: "session_busy",
      status: 409,
    });
    await t.client.sessions.abort(s.id);
  });

  it("an unknown failure is a 500 with a reference id in the body and the log, never a stack trace", async () => {
    const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "say hi" });
    await collectUntil(t.client, s.id, untilTurnFinished(1));
    // Pull the workspace out from under the session: git fails in a way nobody planned for.
    rmSync(s.workspacePath, { recursive: true, force: true });
    mkdirSync(s.workspacePath);
    const res = await call("GET", `/sessions/${s.id}/diff`);
    expect(res.status).toBe(500);
    expect(res.body.error.code).toBe("internal");
    expect(res.body.error.reference).toMatch(/^err_[0-9a-z]{26}$/);
    expect(res.text).not.toMatch(/at .*\.ts:\d+/);
    // The log is written asynchronously: wait for the line rather than read once.
    await waitFor(
      async () => readFileSync(t.logFile, "utf8").includes(res.body.error.reference),
      5000,
      "reference in the log",
    );
  });

  it("never writes a token or provider key into the log", async () => {
    const log = readFileSync(t.logFile, "utf8");
    expect(log).not.toContain(t.token);
    expect(log).not.toContain("flt_not-a-real-token");
  });
});
