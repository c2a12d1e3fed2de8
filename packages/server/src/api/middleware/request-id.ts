import { newId } from "@flotilla/contracts";
import { getConnInfo } from "@hono/node-server/conninfo";
import type { MiddlewareHandler } from "hono";

export const REQUEST_ID_HEADER = "x-request-id";
// A caller's id is kept when it is a plain token (it lands in the audit log and log lines).
export const ACCEPTED_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Every request has an id: the caller's `x-request-id` when it sends a plain one, else a new
 * `req_…`; the response echoes it. With the peer's address it is what the audit log records of
 * the request. The address is the socket's: no proxy header is trusted (any client could send one).
 */
export function requestId(): MiddlewareHandler<{
  Variables: { requestId: string; ip: string | null };
}> {
  return async (c, next) => {
    const given = c.req.header(REQUEST_ID_HEADER);
    const id = given && ACCEPTED_REQUEST_ID.test(given) ? given : newId("req");
    c.set("requestId", id);
    let ip: string | null = null;
    try {
      ip = getConnInfo(c).remote.address ?? null;
    } catch {
      // Not served by node (app.request in a test): no peer.
    }
    c.set("ip", ip);
    c.header(REQUEST_ID_HEADER, id);
    await next();
    if (!c.res.headers.has(REQUEST_ID_HEADER)) {
      try {
        c.res.headers.set(REQUEST_ID_HEADER, id);
      } catch {
        // An immutable response (a proxied body): it goes without the echo.
      }
    }
  };
}
