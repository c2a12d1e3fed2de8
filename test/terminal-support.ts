import type { TerminalClientFrame, TerminalServerFrame } from "@flotilla/contracts";
import WebSocket from "ws";

/** A terminal WebSocket client for tests: keeps every frame and waits on them, never on sleeps. */
export class TermSocket {
  readonly frames: TerminalServerFrame[] = [];
  readonly ws: WebSocket;
  readonly opened: Promise<void>;
  readonly closed: Promise<number>;
  private waiters = new Set<() => void>();

  constructor(url: string, token: string) {
    this.ws = new WebSocket(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
    this.opened = new Promise((res, rej) => {
      this.ws.once("open", () => res());
      this.ws.once("unexpected-response", (_req, r) => rej(new Error(`upgrade refused: ${r.statusCode}`)));
      this.ws.once("error", rej);
    });
    this.closed = new Promise((res) => this.ws.once("close", (code) => res(code)));
    this.ws.on("message", (raw) => {
      this.frames.push(JSON.parse(raw.toString()));
      for (const w of this.waiters) w();
    });
  }

  send(f: TerminalClientFrame): void {
    this.ws.send(JSON.stringify(f));
  }

  /** Everything the shell printed to this client: the snapshot, then live output. */
  text(): string {
    return this.frames.map((f) => (f.type === "snapshot" || f.type === "output" ? f.data : "")).join("");
  }

  /** Resolves with the first frame (from index `from`) that matches. */
  waitFor<T extends TerminalServerFrame>(
    pred: (f: TerminalServerFrame) => f is T,
    from?: number,
    timeoutMs?: number,
  ): Promise<T>;
  waitFor(
    pred: (f: TerminalServerFrame) => boolean,
    from?: number,
    timeoutMs?: number,
  ): Promise<TerminalServerFrame>;
  waitFor(
    pred: (f: TerminalServerFrame) => boolean,
    from = 0,
    timeoutMs = 15_000,
  ): Promise<TerminalServerFrame> {
    return new Promise((res, rej) => {
      const check = () => {
        const f = this.frames.slice(from).find(pred);
        if (!f) return false;
        this.waiters.delete(check);
        clearTimeout(timer);
        res(f);
        return true;
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        rej(new Error(`no matching frame in time; frames: ${JSON.stringify(this.frames).slice(-2000)}`));
      }, timeoutMs);
      if (!check()) this.waiters.add(check);
    });
  }

  /** The same without escape sequences (bash wraps each command in bracketed-paste toggles). */
  plain(): string {
    return stripAnsi(this.text());
  }

  /** Waits until the shell's output (snapshot and live, escape sequences removed) matches. */
  async waitText(re: RegExp, timeoutMs = 15_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!re.test(this.plain())) {
      const left = end - Date.now();
      if (left <= 0) throw new Error(`${re} not in terminal output:\n${this.plain()}`);
      await this.waitFor(() => true, this.frames.length, left).catch(() => {});
    }
  }

  close(): Promise<number> {
    this.ws.close();
    return this.closed;
  }
}

export const lastLease = (s: TermSocket) =>
  s.frames.filter((f): f is Extract<TerminalServerFrame, { type: "lease" }> => f.type === "lease").at(-1);

// CSI and OSC sequences and charset selections; built from strings, as a regex literal would hold control characters.
const ESC = "\u001b";
const BEL = "\u0007";
const ANSI = new RegExp(`${ESC}(\\[[?0-9;]*[ -/]*[@-~]|\\][^${BEL}]*${BEL}|[()][0-9A-Z])`, "g");
export const stripAnsi = (s: string) => s.replace(ANSI, "");
