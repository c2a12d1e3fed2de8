import { type UsageGroup, UsageQuery, UsageReport, type UsageRow } from "@flotilla/contracts";
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { Env, Services } from "../context.ts";
import { errorResponses } from "../openapi.ts";

// Each group's column over gateway_calls (g). Fixed strings only: the query's `by` picks among them.
const COLUMNS: Record<UsageGroup, string> = {
  project: "g.project_id",
  model: "g.provider || '/' || coalesce(g.model, '')",
  day: "to_char(g.started_at at time zone 'UTC', 'YYYY-MM-DD')",
  session: "g.session_id",
  task: "g.task_id",
  token: "g.api_token_id",
};

const csvCell = (v: unknown) => {
  const s = v === null || v === undefined ? "" : String(v);
  return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
};

export function usageRoutes(app: OpenAPIHono<Env>, s: Services): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/usage",
      tags: ["overview"],
      description:
        "What the organisation's model calls through the gateway used and cost, grouped (by project, model, day, session, task), as JSON or CSV.",
      request: { query: UsageQuery },
      responses: {
        200: {
          content: { "application/json": { schema: UsageReport }, "text/csv": { schema: z.string() } },
          description: "The usage, one row per group, and the total",
        },
        ...errorResponses({ 400: "A bad query", 401: "No or bad token" }),
      },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const by = [...new Set(q.by.split(","))] as UsageGroup[];
      const until = q.until ? new Date(q.until) : new Date();
      const since = q.since ? new Date(q.since) : new Date(until.getTime() - 30 * 86_400_000);
      const cols = by.map((g) => `${COLUMNS[g]} as "${g}"`);
      const { rows } = await s.db.query(
        `select ${cols.join(", ")},
                count(*) filter (where g.status <> 402)::int as calls,
                count(*) filter (where g.status = 402)::int as refused,
                coalesce(sum(g.input_tokens), 0)::float8 as "inputTokens",
                coalesce(sum(g.output_tokens), 0)::float8 as "outputTokens",
                coalesce(sum(g.cached_tokens), 0)::float8 as "cachedTokens",
                coalesce(sum(g.cost_usd), 0)::float8 as "costUsd"
           from gateway_calls g join sessions s on s.id = g.session_id
          where s.org_id = $1 and g.started_at >= $2 and g.started_at < $3
          group by ${by.map((_, i) => i + 1).join(", ")}
          order by ${by.map((_, i) => i + 1).join(", ")}`,
        [c.get("principal").orgId, since, until],
      );
      const items = rows as UsageRow[];
      const total: UsageRow = {
        calls: 0,
        refused: 0,
        inputTokens: 0,
        outputTokens: 0,
        cachedTokens: 0,
        costUsd: 0,
      };
      for (const r of items)
        for (const k of [
          "calls",
          "refused",
          "inputTokens",
          "outputTokens",
          "cachedTokens",
          "costUsd",
        ] as const)
          total[k] += r[k];
      if (q.format === "csv") {
        const head = [...by, "calls", "refused", "inputTokens", "outputTokens", "cachedTokens", "costUsd"];
        const lines = [
          head.join(","),
          ...items.map((r) => head.map((h) => csvCell(r[h as keyof UsageRow])).join(",")),
        ];
        return c.text(`${lines.join("\n")}\n`, 200, { "content-type": "text/csv; charset=utf-8" });
      }
      return c.json({ since: since.toISOString(), until: until.toISOString(), by, items, total }, 200);
    },
  );
}
