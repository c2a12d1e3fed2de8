import { FlotillaError, TerminalQuery } from "@flotilla/contracts";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { Env, Services } from "../context.ts";
import { errorBody } from "../errors.ts";
import { errorResponses, IdParams } from "../openapi.ts";

/**
 * Documents the terminal WebSocket. The upgrade itself is served by sockets/terminal.ts (Node hands
 * upgrades to the server's `upgrade` listener, never to Hono); a plain GET lands here.
 */
export function terminalRoutes(app: OpenAPIHono<Env>, s: Services): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/sessions/{id}/terminal",
      tags: ["sessions"],
      description:
        "WebSocket (send `Upgrade: websocket`): a shell in the session's workspace, shared by every client. " +
        "One driver holds the lease, others view read-only. JSON text frames: client→server `input`, `resize`, `take` (`force` needs an admin token), `release`; " +
        "server→client `snapshot` (always first), `output`, `resize`, `lease`, `request`, `error`, `exit`. " +
        "Authenticate with `Authorization: Bearer` or `?token=`. Served only by the replica holding the session's workspace (409 elsewhere).",
      request: { params: IdParams, query: TerminalQuery },
      responses: {
        101: { description: "Switching protocols: the terminal stream" },
        ...errorResponses({
          400: "Invalid query",
          401: "No or bad token",
          404: "No such session",
          409: "Session served by another replica",
          426: "Not a WebSocket upgrade",
        }),
      },
    }),
    // biome-ignore lint/suspicious/noExplicitAny: the documented success is the upgrade, never this handler's
    (async (c: any) => {
      // Still checked, so a plain GET answers the same 404/409 an upgrade would.
      await s.sessions.terminalTarget(c.req.valid("param").id, c.get("principal"));
      return c.json(
        errorBody(
          new FlotillaError(
            "invalid_request",
            "this endpoint is a WebSocket: connect with Upgrade: websocket",
          ),
        ),
        426,
      );
    }) as never,
  );
}
