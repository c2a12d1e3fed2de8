import { CSRF_COOKIE, CSRF_HEADER, FlotillaError, SESSION_COOKIE } from "@flotilla/contracts";
import type { Context } from "hono";
import { getCookie } from "hono/cookie";
import type { Principal } from "../../identity/principal.ts";
import { WebSessionService } from "../../identity/web-sessions.ts";
import type { Services } from "../context.ts";

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** Login and logout need no credential: login takes the token in its body, logout only clears. */
export function isPublicAuthRoute(c: Context): boolean {
  return (c.req.method === "POST" && c.req.path === "/auth/session") || c.req.path === "/auth/logout";
}

/**
 * A request is authenticated by its bearer token, or failing that by the browser session cookie.
 * A bearer header wins so that programs are never affected by a stray cookie. Cookies ride along
 * on cross-site requests by themselves, so a cookie-authenticated mutation must also prove it
 * came from our own page (the CSRF double submit); SameSite=Strict is the first line, this the second.
 */
export async function authenticate(c: Context, s: Services, web: WebSessionService): Promise<Principal> {
  const m = /^Bearer\s+(\S+)$/i.exec(c.req.header("authorization") ?? "");
  const cookie = getCookie(c, SESSION_COOKIE);
  if (m || !cookie) return s.tokens.verify(m?.[1]);
  const p = await web.verify(cookie);
  if (
    !SAFE_METHODS.has(c.req.method) &&
    !WebSessionService.csrfMatches(p, c.req.header(CSRF_HEADER), getCookie(c, CSRF_COOKIE))
  )
    throw new FlotillaError(
      "forbidden",
      `a request authenticated by the session cookie must send the ${CSRF_COOKIE} cookie's value in the ${CSRF_HEADER} header`,
      { field: CSRF_HEADER },
    );
  return { tokenId: p.tokenId, orgId: p.orgId, role: p.role };
}
