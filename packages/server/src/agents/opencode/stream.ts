import { createParser } from "eventsource-parser";
import type { Logger } from "../../platform/logger.ts";
import { basicAuth } from "./health.ts";

export interface StreamHandlers {
  /**
   * Every frame, in order. Returns a promise so frames are processed one at a time. `receivedAt`
   * is `performance.now()` when the frame was read off the stream (it may wait behind others).
   */
  onEvent(
    directory: string,
    payload: { type: string; properties: Record<string, unknown> },
    receivedAt: number,
  ): Promise<void>;
  /** The stream is (re)connected: state that changed while it was down must be read back. */
  onConnected(): Promise<void>;
  /** The stream ended or went silent; returns whether to reconnect (false = harness is gone). */
  onDropped(reason: string): Promise<boolean>;
}

// OpenCode sends a heartbeat every 10 s; silence for longer than this means the stream is dead.
const SILENCE_MS = 25_000;

/**
 * One subscription to a harness's `/global/event` (all directories), reconnecting until stopped.
 * OpenCode's stream has no resume, so every (re)connect is followed by a reconcile (onConnected),
 * queued behind the frames already received so the order of writes matches the order of reads.
 */
export class HarnessStream {
  private abort = new AbortController();
  private stopped = false;
  private chain: Promise<void> = Promise.resolve();
  readonly done: Promise<void>;
  /** Resolves once the first connection is up and its reconcile ran: events after it are seen live. */
  readonly ready: Promise<void>;
  private markReady!: () => void;

  constructor(
    private readonly url: string,
    private readonly password: string,
    private readonly handlers: StreamHandlers,
    private readonly log: Logger,
  ) {
    this.ready = new Promise((r) => {
      this.markReady = r;
    });
    this.done = this.loop();
  }

  private enqueue(fn: () => Promise<void>): void {
    this.chain = this.chain.then(fn).catch((err) => this.log.error({ err }, "event handling failed"));
  }

  /** Waits for every frame received so far to be handled. */
  drain(): Promise<void> {
    return this.chain;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.markReady();
    this.abort.abort();
    // The loop ends by our own abort here; how it ended was already reported to onDropped.
    await this.done.catch(() => {});
    await this.chain;
  }

  private async loop(): Promise<void> {
    let backoff = 100;
    while (!this.stopped) {
      let reason = "stream ended";
      try {
        await this.connectOnce(() => {
          backoff = 100;
        });
      } catch (e) {
        reason = (e as Error).message;
      }
      if (this.stopped) return;
      await this.chain;
      const again = await this.handlers.onDropped(reason).catch((err: unknown) => {
        this.log.warn(
          { err, reason },
          "deciding whether to reconnect to the harness failed; giving up on it",
        );
        return false;
      });
      if (!again) return;
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 5_000);
    }
  }

  private async connectOnce(onOpen: () => void): Promise<void> {
    this.abort = new AbortController();
    const ac = this.abort;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => ac.abort(new Error("harness stream went silent")), SILENCE_MS);
    };
    arm();
    try {
      const res = await fetch(`${this.url}/global/event`, {
        headers: { authorization: basicAuth(this.password), accept: "text/event-stream" },
        signal: ac.signal,
      });
      if (!res.ok || !res.body) throw new Error(`harness event stream answered ${res.status}`);
      const parser = createParser({
        onEvent: (ev) => {
          let frame: {
            directory?: string;
            type?: string;
            payload?: { type: string; properties: Record<string, unknown> };
          };
          try {
            frame = JSON.parse(ev.data);
          } catch {
            return;
          }
          const payload =
            frame.payload ??
            (frame.type ? (frame as { type: string; properties: Record<string, unknown> }) : undefined);
          if (!payload?.type) return;
          if (payload.type === "server.connected") {
            onOpen();
            this.enqueue(async () => {
              await this.handlers.onConnected();
              this.markReady();
            });
            return;
          }
          if (payload.type === "server.heartbeat") return;
          const receivedAt = performance.now();
          this.enqueue(() => this.handlers.onEvent(frame.directory ?? "", payload, receivedAt));
        },
      });
      const decoder = new TextDecoder();
      // (via unknown: with @xterm/xterm installed for the UI, its typings pull in the DOM lib, whose ReadableStream type is not async-iterable)
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        arm();
        parser.feed(decoder.decode(chunk, { stream: true }));
      }
    } finally {
      clearTimeout(timer);
    }
  }
}
