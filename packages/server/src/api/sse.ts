import type { SessionEvent } from "@flotilla/contracts";
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import type { Services } from "./context.ts";

const HEARTBEAT_MS = 15_000;

/**
 * Snapshot then live, with no gap and no duplicate at the seam: subscribe first (buffering), read
 * the stored events after `after`, then drain live events, skipping any seq already sent and
 * filling from the log any seq that arrives out of order.
 */
export function sessionEventStream(c: Context, s: Services, sessionId: string, after: number): Response {
  return streamSSE(c, async (stream) => {
    let last = after;
    const buffer: SessionEvent[] = [];
    let wake: (() => void) | undefined;
    const unsubscribe = s.bus.subscribe(sessionId, (e) => {
      buffer.push(e);
      wake?.();
    });
    let closed = false;
    const cleanup = () => {
      if (closed) return;
      closed = true;
      unsubscribe();
      clearInterval(beat);
      wake?.();
    };
    stream.onAbort(cleanup);
    const beat = setInterval(() => {
      void stream.write(": heartbeat\n\n").catch(cleanup);
    }, HEARTBEAT_MS);
    const send = async (e: SessionEvent) => {
      await stream.writeSSE({ id: String(e.seq), event: e.type, data: JSON.stringify(e) });
      last = e.seq;
    };
    const catchUp = async () => {
      for (;;) {
        const batch = await s.events.read(s.db, sessionId, last, 1000);
        for (const e of batch) await send(e);
        if (batch.length < 1000) return;
      }
    };
    try {
      await catchUp();
      await stream.write(": live\n\n");
      while (!closed && !stream.aborted) {
        if (buffer.length === 0) {
          await new Promise<void>((r) => {
            wake = r;
          });
          wake = undefined;
          continue;
        }
        buffer.sort((a, b) => a.seq - b.seq);
        const e = buffer.shift()!;
        if (e.seq <= last) continue;
        // Out of order (another writer's publish overtook): everything up to e is committed, read it.
        if (e.seq > last + 1) await catchUp();
        else await send(e);
      }
    } catch {
      // client went away mid-write
    } finally {
      cleanup();
    }
  });
}
