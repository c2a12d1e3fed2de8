import type { TerminalClientFrame, TerminalServerFrame } from "@flotilla/contracts";
import { api, errorText } from "../api.ts";

/** Where the socket is: `exited` (the shell ended) and `failed` (the server refuses us) stay until restart. */
export type Link = "connecting" | "live" | "reconnecting" | "exited" | "failed";

/**
 * A viewer's request for control: `declined` when the driver kept control, `unanswered` when the
 * driver (a CLI, say) has said nothing for a while, `superseded` when the lease went to someone else.
 */
export type Ask = "none" | "pending" | "granted" | "declined" | "unanswered" | "superseded";

export interface TerminalState {
  link: Link;
  /** The lease holder's label (`<token id>/<client id>`), or null when nobody drives. */
  holder: string | null;
  /** This connection holds the lease: its keys and size go to the shell. */
  you: boolean;
  ask: Ask;
  /** A viewer who asked this driver for control, waiting for an answer. */
  request: string | null;
  /** The last refusal from the server (an `error` frame), or why the connection failed. */
  error: string | null;
  exitCode: number | null;
}

/** What the connection drives: the terminal on screen. */
export interface TerminalSink {
  /** The current screen, always first after (re)connecting: replaces whatever was shown. */
  snapshot(data: string, cols: number, rows: number): void;
  output(data: string): void;
  /** The driver changed the shell's size (sent to viewers only). */
  resize(cols: number, rows: number): void;
}

const BACKOFF_MS = [250, 500, 1000, 2000, 4000];
const MAX_BACKOFF_MS = 8000;
/** After this long with no answer, a pending request is reported as unanswered. */
export const ASK_TIMEOUT_MS = 30_000;

// The server's limits on a size (contracts' TerminalClientFrame).
const clamp = (n: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, Math.floor(n)));

/**
 * One browser tab's connection to a session's shared terminal: reconnects on its own (the server
 * sends a fresh snapshot each time), and keeps one client id for the page's life, so a driver whose
 * socket drops gets its lease back within the server's grace period. Holds no React state: the view
 * subscribes with `onChange`.
 */
export class TerminalConnection {
  private ws: WebSocket | undefined;
  private state: TerminalState = {
    link: "connecting",
    holder: null,
    you: false,
    ask: "none",
    request: null,
    error: null,
    exitCode: null,
  };
  /** First connect asks to drive (taking the lease if nobody holds it); a reconnect keeps the role it had. */
  private wantDrive = true;
  private attempt = 0;
  private retry: ReturnType<typeof setTimeout> | undefined;
  private askTimer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;

  constructor(
    private readonly sessionId: string,
    private readonly clientId: string,
    private readonly sink: TerminalSink,
    private readonly onChange: (s: TerminalState) => void,
  ) {}

  get current(): TerminalState {
    return this.state;
  }

  start(): void {
    this.stopped = false;
    this.open();
  }

  /** Closes for good (the page is leaving): no reconnect, no more state changes. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.retry);
    clearTimeout(this.askTimer);
    const ws = this.ws;
    this.ws = undefined;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, "page closed");
  }

  /** Starts over after the shell exited or the server refused us. */
  restart(): void {
    this.stop();
    this.attempt = 0;
    this.set({ link: "connecting", error: null, exitCode: null });
    this.start();
  }

  /** Keystrokes: sent only while driving; a viewer's are dropped here (and would be refused by the server). */
  input(data: string): void {
    if (this.state.you) this.send({ type: "input", data });
  }

  /** The shell's size: only the driver sets it (viewers follow the driver's). */
  resize(cols: number, rows: number): void {
    if (this.state.you) this.send({ type: "resize", cols: clamp(cols, 2, 1000), rows: clamp(rows, 1, 500) });
  }

  /** Asks the driver for control (or takes it at once when nobody drives); `force` is for admins. */
  take(force = false): void {
    this.set({ error: null, ...(force ? {} : { ask: "pending" as const }) });
    this.send(force ? { type: "take", force: true } : { type: "take" });
    clearTimeout(this.askTimer);
    if (!force)
      this.askTimer = setTimeout(() => {
        if (this.state.ask === "pending") this.set({ ask: "unanswered" });
      }, ASK_TIMEOUT_MS);
  }

  /** Gives the lease up: to whoever asked last, else to nobody. */
  release(): void {
    this.set({ request: null });
    this.send({ type: "release" });
  }

  /** Keeps control; the server tells the one who asked. */
  decline(): void {
    this.set({ request: null });
    this.send({ type: "decline" });
  }

  private send(f: TerminalClientFrame): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(f));
  }

  private set(patch: Partial<TerminalState>): void {
    if (this.stopped) return;
    this.state = { ...this.state, ...patch };
    this.onChange(this.state);
  }

  private url(): string {
    const u = new URL(`/sessions/${encodeURIComponent(this.sessionId)}/terminal`, window.location.href);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    u.searchParams.set("mode", this.wantDrive ? "drive" : "view");
    u.searchParams.set("client", this.clientId);
    return u.toString();
  }

  private open(): void {
    if (this.stopped) return;
    // The session cookie rides along (same origin); the server checks the Origin header for it.
    const ws = new WebSocket(this.url());
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
    };
    ws.onmessage = (m: MessageEvent<string>) => {
      if (this.ws !== ws) return;
      this.onFrame(JSON.parse(m.data) as TerminalServerFrame);
    };
    ws.onclose = () => {
      if (this.ws !== ws || this.stopped) return;
      this.ws = undefined;
      clearTimeout(this.askTimer);
      // The server's bookkeeping for this socket (lease, pending request) went with it.
      this.set({ you: false, request: null, ask: "none" });
      if (this.state.link === "exited") return;
      this.set({ link: "reconnecting" });
      if (opened) this.schedule();
      else void this.diagnose();
    };
  }

  /**
   * A refused handshake tells a browser nothing (no status). The session's own GET answers the
   * permanent reasons an upgrade is refused (logged out, no such session, not yours), so those stop
   * the retries; anything else (a restart, a network drop) is retried. It is an ordinary 200 when all
   * is well, so a healthy page logs no error for it.
   */
  private async diagnose(): Promise<void> {
    try {
      await api.sessions.get(this.sessionId);
    } catch (e) {
      const status = (e as { status?: number }).status ?? 0;
      if (status >= 400 && status < 500 && !(e as { retriable?: boolean }).retriable) {
        this.set({ link: "failed", error: errorText(e) });
        return;
      }
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    const base = BACKOFF_MS[this.attempt] ?? MAX_BACKOFF_MS;
    this.attempt++;
    clearTimeout(this.retry);
    this.retry = setTimeout(() => this.open(), base / 2 + Math.random() * base);
  }

  private onFrame(f: TerminalServerFrame): void {
    switch (f.type) {
      case "snapshot":
        this.attempt = 0;
        this.sink.snapshot(f.data, f.cols, f.rows);
        this.set({ link: "live", error: null });
        return;
      case "output":
        this.sink.output(f.data);
        return;
      case "resize":
        if (!this.state.you) this.sink.resize(f.cols, f.rows);
        return;
      case "lease": {
        this.wantDrive = f.you;
        let ask = this.state.ask;
        if (f.you && ask === "pending") ask = "granted";
        else if (!f.you && (ask === "pending" || ask === "unanswered") && f.holder !== this.state.holder)
          ask = "superseded";
        else if (!f.you && ask === "granted") ask = "none";
        if (ask !== "pending") clearTimeout(this.askTimer);
        this.set({ holder: f.holder, you: f.you, ask, ...(f.you ? {} : { request: null }) });
        return;
      }
      case "request":
        this.set({ request: f.from });
        return;
      case "declined":
        clearTimeout(this.askTimer);
        if (this.state.ask === "pending" || this.state.ask === "unanswered") this.set({ ask: "declined" });
        return;
      case "error":
        this.set({ error: f.message });
        return;
      case "exit":
        this.set({ link: "exited", exitCode: f.code, you: false, holder: null, request: null });
        return;
    }
  }
}
