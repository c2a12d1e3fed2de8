import { randomBytes } from "node:crypto";
import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import {
  FlotillaError,
  newId,
  SESSION_COOKIE,
  TerminalClientFrame,
  TerminalQuery,
  type TerminalServerFrame,
} from "@flotilla/contracts";
import { WebSocketServer } from "ws";
import type { Principal } from "../../identity/principal.ts";
import type { TerminalService } from "../../terminals/terminals.ts";
import type { Services } from "../context.ts";
import { ACCEPTED_REQUEST_ID, REQUEST_ID_HEADER } from "../middleware/request-id.ts";

/** The UI's browser sessions (identity/web-sessions.ts), verified by the cookie's secret. */
type WebSessions = { verify(secret: string): Promise<Principal> };

const PATH = /^\/sessions\/([^/]+)\/terminal$/;
/** Mirrors the stream heartbeat rule (≤ 15 s): proxies drop quiet sockets, and dead peers are found. */
const PING_MS = 15_000;

/** The value of one cookie in a Cookie header. */
function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim());
  }
  return undefined;
}

/**
 * Who is attaching: the Authorization header, else `?token=` (browsers cannot set headers on a
 * WebSocket), else the UI's session cookie. A cookie rides along on any page's request, and the
 * WebSocket handshake is exempt from CORS, so a cookie is only taken from our own origin.
 */
async function principalOf(req: IncomingMessage, query: URLSearchParams, s: Services, web?: WebSessions) {
  const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "");
  const token = m?.[1] ?? query.get("token") ?? undefined;
  const cookie = cookieValue(req.headers.cookie, SESSION_COOKIE);
  if (token || !cookie || !web) return s.tokens.verify(token);
  const origin = req.headers.origin;
  let sameOrigin = false;
  try {
    sameOrigin = !!origin && new URL(origin).host === req.headers.host;
  } catch {
    sameOrigin = false;
  }
  if (!sameOrigin)
    throw new FlotillaError(
      "forbidden",
      "a cookie-authenticated terminal must be opened from Flotilla's own page",
    );
  const p = await web.verify(cookie);
  return { tokenId: p.tokenId, orgId: p.orgId, role: p.role } satisfies Principal;
}

/** The upgrade's request id: the caller's when plain, as for every other request (middleware/request-id.ts). */
const requestIdOf = (given: string | string[] | undefined) =>
  typeof given === "string" && ACCEPTED_REQUEST_ID.test(given) ? given : newId("req");

function refuse(socket: Duplex, e: FlotillaError): void {
  const body = JSON.stringify(e.toBody());
  socket.end(
    `HTTP/1.1 ${e.status} ${e.code}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/**
 * WebSocket transport for terminals. Upgrades never reach Hono: Node hands them to the `upgrade`
 * listener, so authentication and the session check (local replica only) are done here, before
 * the handshake, and a refusal is an ordinary HTTP error response.
 */
export function attachTerminalSocket(
  server: Server,
  s: Services,
  terminals: TerminalService,
  opts: { webSessions?: WebSessions } = {},
): { close(): void } {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 256 * 1024 });
  const log = s.log.child({ component: "terminal-socket" });

  const onUpgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? "/", "http://x");
    const m = PATH.exec(url.pathname);
    // Other upgrade paths are not ours: leave them to any other listener.
    if (!m) return;
    socket.on("error", () => {});
    try {
      const q = TerminalQuery.safeParse(Object.fromEntries(url.searchParams));
      if (!q.success)
        throw new FlotillaError("invalid_request", q.error.issues[0]!.message, { field: "query" });
      const principal = await principalOf(req, url.searchParams, s, opts.webSessions);
      const sessionId = decodeURIComponent(m[1]!);
      const target = await s.sessions.terminalTarget(sessionId, principal);
      wss.handleUpgrade(req, socket, head, (ws) => {
        const label = `${principal.tokenId}/${q.data.client ?? randomBytes(6).toString("hex")}`;
        const send = (f: TerminalServerFrame) => {
          if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(f));
        };
        const conn = terminals.attach(
          sessionId,
          target,
          {
            label,
            principal,
            mode: q.data.mode,
            audit: {
              orgId: principal.orgId,
              actor: principal.tokenId,
              requestId: requestIdOf(req.headers[REQUEST_ID_HEADER]),
              ip: req.socket.remoteAddress ?? null,
            },
          },
          { send, close: () => ws.close(1001, "terminal closed") },
        );
        let alive = true;
        const ping = setInterval(() => {
          if (!alive) return ws.terminate();
          alive = false;
          ws.ping();
        }, PING_MS);
        ws.on("pong", () => {
          alive = true;
        });
        ws.on("message", (raw, isBinary) => {
          let f: ReturnType<typeof TerminalClientFrame.safeParse>;
          try {
            f = TerminalClientFrame.safeParse(JSON.parse(isBinary ? "" : raw.toString()));
          } catch {
            return send({ type: "error", code: "invalid_json", message: "frames are JSON text" });
          }
          if (!f.success)
            return send({ type: "error", code: "invalid_request", message: f.error.issues[0]!.message });
          conn.frame(f.data);
        });
        let done = false;
        const cleanup = () => {
          if (done) return;
          done = true;
          clearInterval(ping);
          conn.leave();
        };
        ws.on("close", cleanup);
        ws.on("error", cleanup);
        log.debug({ session: sessionId, label, mode: q.data.mode }, "terminal attached");
      });
    } catch (e) {
      const err =
        e instanceof FlotillaError
          ? e
          : new FlotillaError("internal", "terminal attach failed", { cause: e });
      if (!(e instanceof FlotillaError)) log.error({ err: e }, "terminal attach failed");
      refuse(socket, err);
    }
  };
  const listener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void onUpgrade(req, socket, head);
  server.on("upgrade", listener);
  return {
    close: () => {
      server.off("upgrade", listener);
      for (const ws of wss.clients) ws.terminate();
      wss.close();
    },
  };
}
