import { z } from "@hono/zod-openapi";

/**
 * Terminal attach protocol: JSON text frames over the WebSocket at `GET /sessions/{id}/terminal`.
 * Query: `mode=drive|view` (default drive), `client=<id>` (a stable id per tab or process, so a
 * driver that reconnects within the grace period keeps its lease), `token=<token>` for browsers
 * that cannot set an Authorization header.
 */
export const TerminalMode = z.enum(["drive", "view"]);
export type TerminalMode = z.infer<typeof TerminalMode>;

export const TerminalQuery = z.object({
  mode: TerminalMode.default("drive"),
  client: z
    .string()
    .regex(/^[\w-]{1,64}$/)
    .optional(),
  token: z.string().max(200).optional(),
});

const Size = { cols: z.number().int().min(2).max(1000), rows: z.number().int().min(1).max(500) };

export const TerminalClientFrame = z.discriminatedUnion("type", [
  z.object({ type: z.literal("input"), data: z.string().max(64 * 1024) }),
  z.object({ type: z.literal("resize"), ...Size }),
  // force: admin tokens only; moves the lease at once instead of asking the driver.
  z.object({ type: z.literal("take"), force: z.boolean().optional() }),
  z.object({ type: z.literal("release") }),
  // The driver keeps control: the one who asked is told so.
  z.object({ type: z.literal("decline") }),
]);
export type TerminalClientFrame = z.infer<typeof TerminalClientFrame>;

export const TerminalServerFrame = z.discriminatedUnion("type", [
  // Always the first frame: the current screen (with colours and cursor), then live output.
  z.object({ type: z.literal("snapshot"), data: z.string(), ...Size }),
  z.object({ type: z.literal("output"), data: z.string() }),
  // The driver changed the size: viewers resize their own terminal to keep the screen the same.
  z.object({ type: z.literal("resize"), ...Size }),
  // Sent on every change of the lease, and when its holder drops or comes back within the grace.
  z.object({
    type: z.literal("lease"),
    /** `<token id>/<client id>` of the driver, or null when nobody drives. */
    holder: z.string().nullable(),
    you: z.boolean(),
    /**
     * Only while the holder is disconnected: when its lease frees (ISO time) unless it comes back
     * first. It then goes to whoever sent `take` last, else to nobody.
     */
    graceUntil: z.string().optional(),
    message: z.string().optional(),
  }),
  // Sent to the driver: someone asks for control; answer with `release` (hand over) or `decline`.
  z.object({ type: z.literal("request"), from: z.string() }),
  // Sent to the one who asked: the driver kept control.
  z.object({ type: z.literal("declined"), by: z.string() }),
  z.object({ type: z.literal("error"), code: z.string(), message: z.string() }),
  // The shell ended; the server closes the socket after this frame.
  z.object({ type: z.literal("exit"), code: z.number().int().nullable() }),
]);
export type TerminalServerFrame = z.infer<typeof TerminalServerFrame>;
