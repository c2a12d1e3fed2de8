import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  collectUntil,
  makeRepo,
  startTestServer,
  type TestServer,
  untilTurnFinished,
} from "../../../test/support.ts";
import { scenario } from "./scenario.ts";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ scenario });
});
afterAll(async () => {
  await t?.close();
});

/** Logs in over plain fetch and returns the cookies as a browser would hold them. */
async function login(): Promise<{ cookie: string; csrf: string; setCookies: string[] }> {
  const res = await fetch(`${t.url}/auth/session`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token: t.token }),
  });
  expect(res.status).toBe(200);
  const setCookies = res.headers.getSetCookie();
  const jar = Object.fromEntries(setCookies.map((c) => c.split(";")[0]!.split("=") as [string, string]));
  return {
    cookie: `flotilla_session=${jar.flotilla_session}; flotilla_csrf=${jar.flotilla_csrf}`,
    csrf: jar.flotilla_csrf!,
    setCookies,
  };
}

/** The first SSE event id the stream sends, then hangs up. */
async function firstEventId(url: string, headers: Record<string, string>): Promise<number> {
  const ac = new AbortController();
  const res = await fetch(url, { headers: { accept: "text/event-stream", ...headers }, signal: ac.signal });
  expect(res.status).toBe(200);
  let text = "";
  const decoder = new TextDecoder();
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      text += decoder.decode(chunk, { stream: true });
      const m = /^id: (\d+)$/m.exec(text);
      if (m) return Number(m[1]);
    }
  } finally {
    ac.abort();
  }
  throw new Error(`no event in ${text}`);
}

describe("browser sessions", () => {
  it("sets an httpOnly session cookie and a readable CSRF cookie, and enforces the double submit", async () => {
    const { cookie, csrf, setCookies } = await login();
    const session = setCookies.find((c) => c.startsWith("flotilla_session="))!;
    const csrfCookie = setCookies.find((c) => c.startsWith("flotilla_csrf="))!;
    expect(session).toMatch(/HttpOnly/i);
    expect(session).toMatch(/SameSite=Strict/i);
    expect(csrfCookie).not.toMatch(/HttpOnly/i);
    expect(csrfCookie).toMatch(/SameSite=Strict/i);

    // Reads need only the cookie.
    const who = await fetch(`${t.url}/auth/session`, { headers: { cookie } });
    expect(who.status).toBe(200);
    expect(await who.json()).toMatchObject({ via: "cookie", role: "admin" });
    expect((await fetch(`${t.url}/sessions`, { headers: { cookie } })).status).toBe(200);

    // A mutation with the cookie alone is refused, and so is one with a header that does not match.
    const post = (headers: Record<string, string>) =>
      fetch(`${t.url}/tokens`, {
        method: "POST",
        headers: { cookie, "content-type": "application/json", ...headers },
        body: JSON.stringify({ name: "from-browser" }),
      });
    const bare = await post({});
    expect(bare.status).toBe(403);
    expect(((await bare.json()) as { error: unknown }).error).toMatchObject({
      code: "forbidden",
      field: "x-csrf-token",
    });
    expect((await post({ "x-csrf-token": `${csrf.slice(0, -1)}x` })).status).toBe(403);
    expect((await post({ "x-csrf-token": csrf })).status).toBe(201);

    // Logout ends the session server-side and clears both cookies.
    const out = await fetch(`${t.url}/auth/logout`, { method: "POST", headers: { cookie } });
    expect(out.status).toBe(200);
    const cleared = out.headers.getSetCookie();
    expect(cleared.some((c) => /^flotilla_session=;/.test(c) && /Max-Age=0/i.test(c))).toBe(true);
    expect(cleared.some((c) => /^flotilla_csrf=;/.test(c))).toBe(true);
    expect((await fetch(`${t.url}/sessions`, { headers: { cookie } })).status).toBe(401);
  });

  it("refuses a bad token at login and ends cookie sessions when their token is revoked", async () => {
    const bad = await fetch(`${t.url}/auth/session`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ token: "flt_nope" }),
    });
    expect(bad.status).toBe(401);
    const { token, info } = await t.client.tokens.create("short-lived");
    const res = await fetch(`${t.url}/auth/session`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ token }),
    });
    const cookie = res.headers
      .getSetCookie()
      .map((c) => c.split(";")[0])
      .join("; ");
    expect((await fetch(`${t.url}/sessions`, { headers: { cookie } })).status).toBe(200);
    await t.client.tokens.revoke(info.id);
    expect((await fetch(`${t.url}/sessions`, { headers: { cookie } })).status).toBe(401);
  });

  it("streams a session's events to the cookie and resumes after Last-Event-ID, even with ?after", async () => {
    const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "hello" });
    await collectUntil(t.client, s.id, untilTurnFinished(1));
    const { cookie } = await login();
    const url = `${t.url}/sessions/${s.id}/events`;
    expect(await firstEventId(url, { cookie })).toBe(1);
    expect(await firstEventId(url, { cookie, "last-event-id": "2" })).toBe(3);
    // EventSource reconnects to its original URL: Last-Event-ID must win over that URL's `after`.
    expect(await firstEventId(`${url}?after=0`, { cookie, "last-event-id": "2" })).toBe(3);
    expect(await firstEventId(`${url}?after=1`, { cookie })).toBe(2);
  });

  it("serves the UI publicly, with a fallback for deep links but never over API paths", async () => {
    const html = { accept: "text/html" };
    const index = await fetch(`${t.url}/`, { headers: html });
    expect(index.status).toBe(200);
    expect(index.headers.get("content-type")).toMatch(/text\/html/);
    expect(index.headers.get("content-security-policy")).toContain("default-src 'self'");
    const body = await index.text();
    expect((await fetch(`${t.url}/s/ses_whatever/changes`, { headers: html })).status).toBe(200);
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(body)![1]!;
    const js = await fetch(`${t.url}${asset}`);
    expect(js.status).toBe(200);
    expect(js.headers.get("cache-control")).toContain("immutable");
    // An API path a browser tab opens is still the API (here: no credential, so 401).
    expect((await fetch(`${t.url}/sessions`, { headers: html })).status).toBe(401);
    expect((await fetch(`${t.url}/assets/nope.js`)).status).toBe(404);
  });
});
