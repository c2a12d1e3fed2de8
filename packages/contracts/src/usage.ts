import { z } from "@hono/zod-openapi";

/** What `GET /usage` can group the model gateway's calls by (any of them, in order). */
export const USAGE_GROUPS = ["project", "model", "day", "session", "task", "token"] as const;
export type UsageGroup = (typeof USAGE_GROUPS)[number];

const groupList = new RegExp(`^(${USAGE_GROUPS.join("|")})(,(${USAGE_GROUPS.join("|")}))*$`);

export const UsageQuery = z
  .object({
    by: z
      .string()
      .regex(groupList, `a comma list of ${USAGE_GROUPS.join(", ")}`)
      .default("project")
      .openapi({
        description: `Group by any of ${USAGE_GROUPS.join(", ")}, comma-separated, in order (default project)`,
      }),
    since: z.iso
      .datetime({ offset: true })
      .optional()
      .openapi({ description: "From (default: 30 days ago)" }),
    until: z.iso
      .datetime({ offset: true })
      .optional()
      .openapi({ description: "To, not included (default: now)" }),
    project: z
      .string()
      .min(1)
      .max(100)
      .optional()
      .openapi({ description: "Only this project's calls (a project id)" }),
    session: z.string().min(1).max(100).optional().openapi({ description: "Only this session's calls" }),
    task: z
      .string()
      .min(1)
      .max(100)
      .optional()
      .openapi({ description: "Only this task's calls (over all its attempts)" }),
    format: z
      .enum(["json", "csv"])
      .default("json")
      .openapi({ description: "csv: one row per group, a header first" }),
  })
  .strict();
export type UsageQuery = z.input<typeof UsageQuery>;

export const UsageRow = z
  .object({
    project: z.string().optional(),
    projectRepo: z
      .string()
      .optional()
      .openapi({ description: "The project's repository (JSON only, when grouped by project)" }),
    model: z.string().optional().openapi({ description: "provider/model" }),
    day: z.string().optional().openapi({ description: "YYYY-MM-DD, UTC" }),
    session: z.string().optional(),
    task: z.string().nullable().optional(),
    token: z.string().nullable().optional().openapi({ description: "The API token that submitted the task" }),
    calls: z.number().int().openapi({ description: "Calls that reached the provider" }),
    refused: z.number().int().openapi({ description: "Calls refused for a budget" }),
    inputTokens: z.number().int(),
    outputTokens: z.number().int(),
    cachedTokens: z.number().int(),
    costUsd: z.number(),
  })
  .openapi("UsageRow");
export type UsageRow = z.infer<typeof UsageRow>;

export const UsageReport = z
  .object({
    since: z.string(),
    until: z.string(),
    by: z.array(z.enum(USAGE_GROUPS)),
    items: z.array(UsageRow),
    total: UsageRow,
  })
  .openapi("UsageReport");
export type UsageReport = z.infer<typeof UsageReport>;
