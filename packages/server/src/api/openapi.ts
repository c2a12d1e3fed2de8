import { ErrorBody } from "@flotilla/contracts";
import { z } from "@hono/zod-openapi";

/** Response and request shapes shared by every route module. */
export const json = <T extends z.ZodTypeAny>(schema: T, description: string) => ({
  content: { "application/json": { schema } },
  description,
});

export const jsonBody = <T extends z.ZodTypeAny>(schema: T) => ({
  body: { content: { "application/json": { schema } }, required: true },
});

/** The error responses a route can give, each with its own description. */
export const errorResponses = <C extends number>(described: Record<C, string>) =>
  Object.fromEntries(
    Object.entries(described).map(([code, d]) => [code, json(ErrorBody, d as string)]),
  ) as Record<C, ReturnType<typeof json<typeof ErrorBody>>>;

export const IdParams = z.object({ id: z.string().min(1).max(100) });
