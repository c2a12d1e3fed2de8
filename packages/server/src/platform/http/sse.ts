import type { Context } from "hono";
import { type SSEStreamingApi, streamSSE } from "hono/streaming";

const HEARTBEAT_MS = 15_000;

/**
 * The loop every live SSE stream shares: items from `subscribe` (made before anything is read, so
 * none is missed) are queued and handed to `drain`; a heartbeat comment keeps idle proxies from
 * closing the stream; an abort or a failed write unsubscribes, stops the heartbeat and ends the
 * loop. `before` runs once, before the `: live` comment (e.g. a replay of stored events).
 */
export function liveSSE<T>(
  c: Context,
  subscribe: (push: (item: T) => void) => () => void,
  handlers: {
    before?: (stream: SSEStreamingApi) => Promise<void>;
    /** Called with a non-empty queue; takes at least one item off it. */
    drain: (queue: T[], stream: SSEStreamingApi) => Promise<void>;
  },
): Response {
  return streamSSE(c, async (stream) => {
    const queue: T[] = [];
    let wake: (() => void) | undefined;
    const unsubscribe = subscribe((item) => {
      queue.push(item);
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
    const beat = setInterval(() => void stream.write(": heartbeat\n\n").catch(cleanup), HEARTBEAT_MS);
    try {
      await handlers.before?.(stream);
      await stream.write(": live\n\n");
      while (!closed && !stream.aborted) {
        if (queue.length === 0) {
          await new Promise<void>((r) => {
            wake = r;
          });
          wake = undefined;
          continue;
        }
        await handlers.drain(queue, stream);
      }
    } catch {
      // the client went away mid-write
    } finally {
      cleanup();
    }
  });
}
