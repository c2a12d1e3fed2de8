import type { ActivityNotice, SessionEvent } from "@flotilla/contracts";
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { liveSSE } from "../../platform/http/sse.ts";
import type { Env, Services } from "../context.ts";

// The session events that change what a list, a count or a session header shows. Deltas don't.
const NOTABLE = new Set<SessionEvent["type"]>([
  "session.status",
  "permission.asked",
  "permission.replied",
  "turn.finished",
  "usage",
]);

/** Which org a session or task belongs to, remembered: both are fixed for life. */
class OrgOf {
  private readonly cache = new Map<string, string | null>();
  constructor(
    private readonly s: Services,
    private readonly table: "sessions" | "tasks",
  ) {}
  async get(id: string): Promise<string | null> {
    const hit = this.cache.get(id);
    if (hit !== undefined) return hit;
    const { rows } = await this.s.db.query(`select org_id from ${this.table} where id = $1`, [id]);
    const org = (rows[0]?.org_id as string | undefined) ?? null;
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(id, org);
    return org;
  }
}

/**
 * The activity feed: one SSE stream that says *that* a session or task changed, not the whole
 * change. A UI re-reads what it shows when told; on (re)connect it re-reads everything, so the
 * feed needs no replay and no cursor. This is what keeps lists and counts live without polling.
 */
export function activityRoutes(app: OpenAPIHono<Env>, s: Services): void {
  const sessionOrg = new OrgOf(s, "sessions");
  const taskOrg = new OrgOf(s, "tasks");
  app.openapi(
    createRoute({
      method: "get",
      path: "/activity",
      tags: ["activity"],
      description:
        "Server-sent events, one per change: `session` (its status, a permission asked or answered, a finished turn, usage) and `task` (a state transition), each carrying an ActivityNotice. Only the caller's org. No replay: re-read what you show when the stream (re)opens.",
      responses: {
        200: {
          description: "The stream",
          content: { "text/event-stream": { schema: z.string() } },
        },
      },
    }),
    // biome-ignore lint/suspicious/noExplicitAny: a stream, not a JSON answer
    (async (c: any) => {
      const org = c.get("principal").orgId as string;
      return liveSSE<ActivityNotice>(
        c,
        (push) => {
          const offSessions = s.bus.subscribeAll((e) => {
            if (!NOTABLE.has(e.type)) return;
            void sessionOrg.get(e.sessionId).then((o) => {
              if (o === org)
                push({
                  kind: "session",
                  id: e.sessionId,
                  ...(e.type === "session.status" ? { status: e.data.status } : {}),
                });
            });
          });
          const offTasks = s.bus.subscribeTasks((n) => {
            void taskOrg.get(n.id).then((o) => {
              if (o === org) push({ kind: "task", id: n.id, state: n.state });
            });
          });
          return () => {
            offSessions();
            offTasks();
          };
        },
        {
          drain: async (queue, stream) => {
            const n = queue.shift()!;
            await stream.writeSSE({ event: n.kind, data: JSON.stringify(n) });
          },
        },
      );
    }) as never,
  );
}
