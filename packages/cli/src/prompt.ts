import { createInterface } from "node:readline";
import { type FlotillaClient, FlotillaError, type SessionEvent } from "@flotilla/client";
import { askLines, type Renderer } from "./render.ts";
import type { Style } from "./style.ts";

type Asked = Extract<SessionEvent, { type: "permission.asked" }>["data"];
type Reply = "once" | "always" | "reject";

const REPLIES: Record<string, Reply> = {
  o: "once",
  once: "once",
  y: "once",
  yes: "once",
  a: "always",
  always: "always",
  r: "reject",
  reject: "reject",
  n: "reject",
  no: "reject",
};

/** The single keys that answer at a terminal. */
const KEYS = new Set(Object.keys(REPLIES).filter((k) => k.length === 1));

export interface Terminal {
  input: NodeJS.ReadableStream & { isTTY?: boolean };
  output: NodeJS.WritableStream & { columns?: number };
}

/**
 * Answers permission asks one at a time, at the keyboard. A readline interface lives only for the
 * length of one question: outside a question stdin stays in cooked mode, so Ctrl-C is a plain
 * SIGINT and typed keys do not interleave with streamed output. Asks answered elsewhere (another
 * terminal, the UI) cancel the question that is showing.
 */
export class PermissionDesk {
  private readonly queue: Asked[] = [];
  private current: { requestId: string; ac: AbortController } | undefined;
  private readonly answered = new Set<string>();
  private running: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly client: FlotillaClient,
    private readonly sessionId: string,
    private readonly renderer: Renderer,
    private readonly style: Style,
    private readonly term: Terminal,
    private readonly onInterrupt: () => void,
  ) {}

  asked(a: Asked): void {
    if (this.closed || this.answered.has(a.requestId)) return;
    this.queue.push(a);
    this.running ??= this.drain().finally(() => {
      this.running = undefined;
    });
  }

  /** The harness recorded a reply: whoever gave it, this ask needs no question any more. */
  replied(requestId: string): void {
    this.answered.add(requestId);
    const i = this.queue.findIndex((q) => q.requestId === requestId);
    if (i >= 0) this.queue.splice(i, 1);
    if (this.current?.requestId === requestId) this.current.ac.abort();
  }

  /** Stops asking (turn over, or Ctrl-C); resolves when the terminal is ours again. */
  async close(): Promise<void> {
    this.closed = true;
    this.queue.length = 0;
    this.current?.ac.abort();
    await this.running;
  }

  private async drain(): Promise<void> {
    for (let a = this.queue.shift(); a && !this.closed; a = this.queue.shift()) {
      const ac = new AbortController();
      this.current = { requestId: a.requestId, ac };
      this.renderer.hold();
      try {
        this.renderer.direct(["", ...askLines(a, this.style, this.term.output.columns).map((l) => `  ${l}`)]);
        const answer = await this.ask(ac.signal);
        if (answer) await this.reply(a.requestId, answer.reply, answer.message);
        else if (!this.closed && !this.answered.has(a.requestId))
          this.renderer.direct([this.style.dim("  left unanswered; the agent waits")]);
      } finally {
        this.current = undefined;
        this.renderer.release();
      }
    }
  }

  private async reply(requestId: string, reply: Reply, message?: string): Promise<void> {
    try {
      await this.client.sessions.reply(this.sessionId, requestId, { reply, ...(message ? { message } : {}) });
    } catch (e) {
      // Someone else answered first: their answer stands, and the stream will show it. Any other
      // failure leaves the ask open; it can still be answered with `flotilla approve|reject`.
      const already = e instanceof FlotillaError && (e.code === "conflict" || e.code === "not_found");
      const why = e instanceof FlotillaError ? `${e.code}: ${e.message}` : (e as Error).message;
      this.renderer.direct([
        already ? this.style.dim(`  already answered (${why})`) : this.style.red(`  reply not sent: ${why}`),
      ]);
    }
  }

  private async ask(signal: AbortSignal): Promise<{ reply: Reply; message?: string } | undefined> {
    const prompt = `  Allow? [o]nce / [a]lways / [r]eject: `;
    for (;;) {
      // At a terminal one key answers; piped input (scripts) answers a line at a time.
      const a = this.term.input.isTTY ? await this.key(prompt, signal) : await this.question(prompt, signal);
      if (a === undefined) return undefined;
      const reply = REPLIES[a.trim().toLowerCase()];
      if (!reply) {
        this.term.output.write(this.style.dim("  type o, a or r, then Enter\n"));
        continue;
      }
      if (reply !== "reject") return { reply };
      const message = await this.question("  Tell the agent why (optional, Enter to skip): ", signal);
      if (message === undefined) return undefined;
      return { reply, message: message.trim() || undefined };
    }
  }

  /**
   * One key from the terminal, in raw mode for the length of the question: o, a or r (or y, n)
   * answers at once, echoed; Enter is ignored, so `o` then Enter answers as `o` does; any other key
   * says what to press. Undefined when cancelled, interrupted (Ctrl-C) or at end of input (Ctrl-D).
   */
  private key(q: string, signal: AbortSignal): Promise<string | undefined> {
    if (signal.aborted) return Promise.resolve(undefined);
    const input = this.term.input as NodeJS.ReadStream;
    this.term.output.write(q);
    return new Promise((resolve) => {
      let done = false;
      const finish = (v: string | undefined) => {
        if (done) return;
        done = true;
        signal.removeEventListener("abort", onAbort);
        input.off("data", onData);
        input.off("end", onEnd);
        input.setRawMode?.(false);
        input.pause();
        resolve(v);
      };
      const onAbort = () => {
        this.term.output.write("\n");
        finish(undefined);
      };
      const onEnd = () => finish(undefined);
      const onData = (chunk: Buffer | string) => {
        // A key and the Enter after it may come in one read: the first answer ends the question
        // and the rest of the read goes with it.
        for (const ch of chunk.toString()) {
          if (ch === "\u0003") {
            this.term.output.write("^C\n");
            finish(undefined);
            this.onInterrupt();
            return;
          }
          if (ch === "\u0004") return finish(undefined);
          if (ch === "\r" || ch === "\n") continue;
          if (KEYS.has(ch.toLowerCase())) {
            this.term.output.write(`${ch}\n`);
            return finish(ch.toLowerCase());
          }
          this.term.output.write(`${ch}\n${this.style.dim("  press o, a or r")}\n${q}`);
        }
      };
      signal.addEventListener("abort", onAbort, { once: true });
      input.setRawMode?.(true);
      input.on("data", onData);
      input.once("end", onEnd);
      input.resume();
    });
  }

  /** One line from the keyboard; undefined when cancelled, interrupted or at end of input. */
  private question(q: string, signal: AbortSignal): Promise<string | undefined> {
    if (signal.aborted) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const rl = createInterface({
        input: this.term.input,
        output: this.term.output,
        terminal: Boolean(this.term.input.isTTY),
      });
      let done = false;
      const finish = (v: string | undefined) => {
        if (done) return;
        done = true;
        signal.removeEventListener("abort", onAbort);
        rl.close();
        resolve(v);
      };
      const onAbort = () => {
        this.term.output.write("\n");
        finish(undefined);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      // In raw mode Ctrl-C reaches readline as a key, not as a signal: pass it on.
      rl.on("SIGINT", () => {
        this.term.output.write("^C\n");
        finish(undefined);
        this.onInterrupt();
      });
      rl.on("close", () => finish(undefined));
      rl.question(q, (answer) => finish(answer));
    });
  }
}
