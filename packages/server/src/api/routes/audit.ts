import { AuditFilters, AuditPage, AuditVerification, ListAuditQuery } from "@flotilla/contracts";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { AuditLog } from "../../audit/audit.ts";
import { requireAdmin } from "../../identity/principal.ts";
import type { Env, Services } from "../context.ts";
import { errorResponses, json } from "../openapi.ts";

const errors = errorResponses({ 400: "Invalid filters", 401: "No or bad token", 403: "Needs admin" });

/** The org's audit log (admins only): read, exported, verified. */
export function auditRoutes(app: OpenAPIHono<Env>, s: Services): void {
  const tags = ["audit"];
  app.openapi(
    createRoute({
      method: "get",
      path: "/audit",
      tags,
      description: "The audit log, newest first. `action` is a prefix (`token.`, `session.delete`).",
      request: { query: ListAuditQuery },
      responses: { 200: json(AuditPage, "One page of the audit log"), ...errors },
    }),
    async (c) => {
      const p = c.get("principal");
      requireAdmin(p);
      const { limit, cursor, ...f } = c.req.valid("query");
      return c.json(await AuditLog.list(s.db, p.orgId, f, limit, cursor), 200);
    },
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/audit/export",
      tags,
      description: "Every matching row, oldest first, one JSON object (an AuditEvent) per line.",
      request: { query: AuditFilters },
      responses: {
        200: {
          content: { "application/x-ndjson": { schema: { type: "string" } } },
          description: "JSON lines",
        },
        ...errors,
      },
    }),
    // biome-ignore lint/suspicious/noExplicitAny: a streamed body, not a typed JSON answer
    (async (c: any) => {
      const p = c.get("principal");
      requireAdmin(p);
      const rows = AuditLog.export(s.db, p.orgId, c.req.valid("query"));
      const enc = new TextEncoder();
      const body = new ReadableStream<Uint8Array>({
        async pull(ctl) {
          const next = await rows.next();
          if (next.done) ctl.close();
          else ctl.enqueue(enc.encode(`${JSON.stringify(next.value)}\n`));
        },
        async cancel() {
          await rows.return(undefined);
        },
      });
      return c.body(body, 200, { "content-type": "application/x-ndjson" });
    }) as never,
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/audit/verify",
      tags,
      description:
        "Walks the hash chain: every row present (no seq missing), linked to the one before, and hashing to its own hash; the chain head where the rows end. Names the first row where it does not hold.",
      responses: {
        200: json(AuditVerification, "The verdict (ok: false names the first bad seq)"),
        ...errors,
      },
    }),
    async (c) => {
      const p = c.get("principal");
      requireAdmin(p);
      return c.json(await AuditLog.verify(s.db, p.orgId), 200);
    },
  );
}
