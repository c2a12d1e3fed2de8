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
        "What the organisation's model calls through the gateway used and cost, grouped (by project, model, day, session, task, token), as JSON or CSV; optionally only one project's, session's or task's.",
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
      // Each filter is a fixed condition with its value as a parameter, never spliced into the SQL.
      const params: unknown[] = [c.get("principal").orgId, since, until];
      const filters: string[] = [];
      for (const [value, column] of [
        [q.project, "g.project_id"],
        [q.session, "g.session_id"],
        [q.task, "g.task_id"],
      ] as const)
        if (value !== undefined) {
          params.push(value);
          filters.push(` and ${column} = $${params.length}`);
        }
      const { rows } = await s.db.query(
        `select ${cols.join(", ")},
                count(*) filter (where g.status <> 402)::int as calls,
                count(*) filter (where g.status = 402)::int as refused,
                coalesce(sum(g.input_tokens), 0)::float8 as "inputTokens",
                coalesce(sum(g.output_tokens), 0)::float8 as "outputTokens",
                coalesce(sum(g.cached_tokens), 0)::float8 as "cachedTokens",
                coalesce(sum(g.cost_usd), 0)::float8 as "costUsd"
           from gateway_calls g join sessions s on s.id = g.session_id
          where s.org_id = $1 and g.started_at >= $2 and g.started_at < $3${filters.join("")}
          group by ${by.map((_, i) => i + 1).join(", ")}
          order by ${by.map((_, i) => i + 1).join(", ")}`,
        params,
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
      // A project id says little to a person: the JSON names each project's repository too.
      if (by.includes("project") && items.length) {
        const { rows: projects } = await s.db.query<{ id: string; repo: string }>(
          "select id, repo from projects where org_id = $1 and id = any($2)",
          [c.get("principal").orgId, [...new Set(items.map((r) => r.project))]],
        );
        const repoOf = new Map(projects.map((p) => [p.id, p.repo]));
        for (const r of items) {
          const repo = r.project ? repoOf.get(r.project) : undefined;
          if (repo) r.projectRepo = repo;
        }
      }
      return c.json({ since: since.toISOString(), until: until.toISOString(), by, items, total }, 200);
    },
  );
}
