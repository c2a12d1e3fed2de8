import { CSRF_COOKIE, FlotillaError, LoginBody, SESSION_COOKIE, WebSession } from "@flotilla/contracts";
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { AuditLog } from "../../audit/audit.ts";
import { DEFAULT_ORG } from "../../identity/tokens.ts";
import type { WebSessionService } from "../../identity/web-sessions.ts";
import { auditContext, type Env, type Services } from "../context.ts";
import { errorResponses, json, jsonBody } from "../openapi.ts";

const errors = errorResponses({ 400: "Invalid input", 401: "No, bad or revoked token" });

// Secure only when the browser reached us over TLS (directly or via a proxy that says so): a
// Secure cookie on plain http://127.0.0.1 would never be sent back and login would silently fail.
const overTls = (c: Context) =>
  new URL(c.req.url).protocol === "https:" || c.req.header("x-forwarded-proto") === "https";

export function authRoutes(app: OpenAPIHono<Env>, s: Services, web: WebSessionService): void {
  const tags = ["auth"];
  app.openAPIRegistry.registerComponent("securitySchemes", "cookie", {
    type: "apiKey",
    in: "cookie",
    name: SESSION_COOKIE,
    description: `Browser session from POST /auth/session; mutations also need the ${CSRF_COOKIE} cookie's value in x-csrf-token`,
  });
  app.openapi(
    createRoute({
      method: "post",
      path: "/auth/session",
      tags,
      security: [],
      description:
        "Exchanges an API token for an httpOnly, SameSite=Strict session cookie and a readable CSRF cookie.",
      request: jsonBody(LoginBody),
      responses: { 200: json(WebSession, "Logged in; cookies set"), ...errors },
    }),
    async (c) => {
      const given = c.req.valid("json").token;
      const p = await s.tokens.verify(given).catch(async (e: unknown) => {
        // A refused token names no org: the failure goes to the default org's log, with the
        // token's first characters (its public prefix, as `flotilla token ls` shows it), never more.
        if (e instanceof FlotillaError && e.code === "unauthorized")
          await AuditLog.record(
            s.db,
            { orgId: DEFAULT_ORG, actor: "anonymous", requestId: c.get("requestId"), ip: c.get("ip") },
            {
              action: "auth.login_failed",
              outcome: "denied",
              detail: { reason: e.message, prefix: given.slice(0, 10) },
            },
          );
        throw e;
      });
      c.set("principal", p);
      const { secret, csrf, expiresAt } = await web.create(p, auditContext(c));
      const base = { sameSite: "Strict", path: "/", secure: overTls(c), expires: expiresAt } as const;
      setCookie(c, SESSION_COOKIE, secret, { ...base, httpOnly: true });
      // Readable by our own page's script on purpose: it echoes it in the CSRF header.
      setCookie(c, CSRF_COOKIE, csrf, { ...base, httpOnly: false });
      return c.json(
        { tokenId: p.tokenId, role: p.role, via: "cookie" as const, expiresAt: expiresAt.toISOString() },
        200,
      );
    },
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/auth/session",
      tags,
      responses: { 200: json(WebSession, "Who this request is"), ...errors },
    }),
    async (c) => {
      const p = c.get("principal");
      const bearer = /^Bearer\s/i.test(c.req.header("authorization") ?? "");
      const cookie = getCookie(c, SESSION_COOKIE);
      const expiresAt = !bearer && cookie ? (await web.verify(cookie)).expiresAt.toISOString() : null;
      return c.json(
        {
          tokenId: p.tokenId,
          role: p.role,
          via: bearer ? ("bearer" as const) : ("cookie" as const),
          expiresAt,
        },
        200,
      );
    },
  );
  app.openapi(
    createRoute({
      method: "post",
      path: "/auth/logout",
      tags,
      security: [],
      description:
        "Ends the browser session (if any) and clears its cookies. Needs no CSRF header: it can only end the caller's own session.",
      responses: { 200: json(z.object({ ok: z.literal(true) }), "Logged out") },
    }),
    async (c) => {
      const cookie = getCookie(c, SESSION_COOKIE);
      if (cookie) await web.remove(cookie, { requestId: c.get("requestId"), ip: c.get("ip") });
      deleteCookie(c, SESSION_COOKIE, { path: "/" });
      deleteCookie(c, CSRF_COOKIE, { path: "/" });
      return c.json({ ok: true as const }, 200);
    },
  );
}
