import { type SessionEvent, sseEventName } from "@flotilla/contracts";
import type { Context } from "hono";
import type { SSEStreamingApi } from "hono/streaming";
import { committedAt } from "../platform/events/log.ts";
import { liveSSE } from "../platform/http/sse.ts";
import type { Services } from "./context.ts";

/**
 * Snapshot then live, with no gap and no duplicate at the seam: subscribe first (buffering), read
 * the stored events after `after`, then drain live events, skipping any seq already sent and
 * filling from the log any seq that arrives out of order. Each live event this replica stored is
 * timed from its commit to its write here (the delivery lag); replayed ones are not.
 */
export function sessionEventStream(c: Context, s: Services, sessionId: string, after: number): Response {
  let last = after;
  const send = async (stream: SSEStreamingApi, e: SessionEvent) => {
    await stream.writeSSE({ id: String(e.seq), event: sseEventName(e.type), data: JSON.stringify(e) });
    last = e.seq;
    const stored = committedAt(e);
    if (stored !== undefined) s.metrics.eventDelivered((performance.now() - stored) / 1000);
  };
  const catchUp = async (stream: SSEStreamingApi) => {
    for (;;) {
      const batch = await s.events.read(s.db, sessionId, last, 1000);
      for (const e of batch) await send(stream, e);
      if (batch.length < 1000) return;
    }
  };
  return liveSSE<SessionEvent>(c, (push) => s.bus.subscribe(sessionId, push), {
    before: catchUp,
    drain: async (buffer, stream) => {
      buffer.sort((a, b) => a.seq - b.seq);
      const e = buffer.shift()!;
      if (e.seq <= last) return;
      // Out of order (another writer's publish overtook): everything up to e is committed, read it.
      if (e.seq > last + 1) await catchUp(stream);
      else await send(stream, e);
    },
  });
}
