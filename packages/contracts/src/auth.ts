import { z } from "@hono/zod-openapi";

/** Browser login: an API token is exchanged once for an httpOnly session cookie. */
export const LoginBody = z
  .object({ token: z.string().trim().min(1, "token must not be empty").max(200) })
  .strict()
  .openapi("Login");
export type LoginBody = z.infer<typeof LoginBody>;

export const WebSession = z
  .object({
    tokenId: z.string(),
    role: z.enum(["admin", "member"]),
    via: z.enum(["bearer", "cookie"]).openapi({ description: "How this request was authenticated" }),
    expiresAt: z
      .string()
      .nullable()
      .openapi({ description: "When the cookie session ends; null for bearer" }),
  })
  .openapi("WebSession");
export type WebSession = z.infer<typeof WebSession>;

/** Cookie and header names, shared by the server and the web UI. */
export { CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE } from "./light.ts";
