import type { TerminalClientFrame, TerminalMode, TerminalServerFrame } from "@flotilla/contracts";
import serializeAddon from "@xterm/addon-serialize";
import xterm from "@xterm/headless";
import { type AuditContext, AuditLog } from "../audit/audit.ts";
import type { Config } from "../config/config.ts";
import type { Principal } from "../identity/principal.ts";
import type { EventBus } from "../platform/events/bus.ts";
import type { EventLog } from "../platform/events/log.ts";
import type { Logger } from "../platform/logger.ts";
import type { PtyProcess } from "../runtime/driver.ts";

/** One attached client, whatever carries its frames (a WebSocket today). */
export interface TerminalPeer {
  send(frame: TerminalServerFrame): void;
  close(): void;
}

export interface Attachment {
  /** Token id and client id: stable across a reconnect of the same tab or process. */
  label: string;
  principal: Principal;
  mode: TerminalMode;
  /** The attaching request, as the audit log records who took or gave up the lease. */
  audit: AuditContext;
}

interface Client extends Attachment {
  peer: TerminalPeer;
  /** Output that arrived while the snapshot was being taken; sent right after it. */
  pending: string[] | undefined;
}

const COLS = 80;
const ROWS = 24;

/**
 * One shell per session, shared by every client, browser or CLI. The PTY's output feeds a headless
 * terminal, so a late joiner gets the current screen (serialised) before live output. One driver
 * holds the lease; everyone else views, and the server refuses their input.
 */
class Terminal {
  readonly clients = new Set<Client>();
  private readonly pty: PtyProcess;
  private readonly mirror: xterm.Terminal;
  private readonly serializer: serializeAddon.SerializeAddon;
  private cols = COLS;
  private rows = ROWS;
  /** The lease: a client label, kept through a driver's grace period after it drops. */
  private holder: string | null = null;
  /** Who holds the lease, for the audit row of its end (the holder may be away, with no client). */
  private holderAudit: AuditContext | undefined;
  private driver: Client | undefined;
  private grace: NodeJS.Timeout | undefined;
  /** While the holder is disconnected: when its lease frees (epoch ms), unless it comes back first. */
  private graceUntil: number | undefined;
  private idle: NodeJS.Timeout | undefined;
  /** Who asked for control last; gets it when the driver releases or its grace runs out. */
  private requester: Client | undefined;
  /** Lease events are appended one after another, so the log keeps their order. */
  private recording: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    readonly sessionId: string,
    spawnPty: (cols: number, rows: number) => PtyProcess,
    private readonly config: Config["terminal"],
    private readonly events: EventLog,
    private readonly log: Logger,
    private readonly onGone: () => void,
  ) {
    // The shell runs through the session's runtime driver: in the same sandbox as the agent, with an
    // environment built from nothing, never as the control plane's user.
    this.pty = spawnPty(COLS, ROWS);
    this.mirror = new xterm.Terminal({ cols: COLS, rows: ROWS, scrollback: 1000, allowProposedApi: true });
    this.serializer = new serializeAddon.SerializeAddon();
    this.mirror.loadAddon(this.serializer);
    this.pty.onData((data) => {
      this.mirror.write(data);
      for (const c of this.clients) {
        if (c.pending) c.pending.push(data);
        else c.peer.send({ type: "output", data });
      }
    });
    this.pty.onExit(({ exitCode }) => {
      this.log.info({ session: sessionId, exitCode }, "terminal shell exited");
      for (const c of this.clients) c.peer.send({ type: "exit", code: exitCode });
      this.close();
    });
    this.armIdle();
  }

  join(a: Attachment, peer: TerminalPeer): Client {
    const c: Client = { ...a, peer, pending: [] };
    this.clients.add(c);
    clearTimeout(this.idle);
    // The mirror parses asynchronously: the callback of an empty write runs once everything the PTY
    // sent before this join is on its screen, and later output waits in `pending`, so the snapshot
    // and the live stream meet with nothing lost or doubled.
    this.mirror.write("", () => {
      if (!this.clients.has(c)) return;
      peer.send({ type: "snapshot", data: this.serializer.serialize(), cols: this.cols, rows: this.rows });
      for (const data of c.pending ?? []) peer.send({ type: "output", data });
      c.pending = undefined;
      if (a.mode === "drive") {
        if (this.holder === null) this.setDriver(c, "acquired");
        else if (this.holder === c.label) {
          // The same client came back (within the grace period, or before its old socket's close
          // was seen, which then counts as stale): it keeps the lease.
          clearTimeout(this.grace);
          this.graceUntil = undefined;
          this.driver = c;
          // Everyone was told it had dropped: tell them it is back.
          this.broadcastLease();
        } else if (this.graceUntil !== undefined)
          this.sendLease(
            c,
            `${this.holder} disconnected and keeps the lease until ${new Date(this.graceUntil).toISOString()} unless it comes back: you joined as a viewer; send take to get it then`,
          );
        else this.sendLease(c, `${this.holder} is driving: you joined as a viewer; send take to ask`);
      } else this.sendLease(c);
    });
    return c;
  }

  leave(c: Client): void {
    if (!this.clients.delete(c)) return;
    if (this.requester === c) this.requester = undefined;
    if (this.driver === c) {
      this.driver = undefined;
      clearTimeout(this.grace);
      // The lease is kept for a while (a reload, a dropped network) and everyone is told until when,
      // so nobody mistakes a closed tab's lease for someone typing.
      this.graceUntil = Date.now() + this.config.graceMs;
      this.grace = setTimeout(() => {
        if (this.driver || this.closed) return;
        const next = this.requester;
        if (next) this.setDriver(next, "driver disconnected");
        else this.setDriver(undefined, "driver disconnected");
      }, this.config.graceMs);
      this.broadcastLease();
    }
    if (this.clients.size === 0) this.armIdle();
  }

  frame(c: Client, f: TerminalClientFrame): void {
    const isDriver = this.driver === c;
    if (f.type === "input") {
      // The check that matters: a viewer's keystrokes never reach the shell, whatever its UI shows.
      if (isDriver) this.pty.write(f.data);
      else this.refuse(c, "forbidden", "you are viewing: send take to ask for control");
    } else if (f.type === "resize") {
      if (!isDriver) this.refuse(c, "forbidden", "only the driver sets the size");
      else {
        this.cols = f.cols;
        this.rows = f.rows;
        this.pty.resize(f.cols, f.rows);
        this.mirror.resize(f.cols, f.rows);
        for (const o of this.clients)
          if (o !== c) o.peer.send({ type: "resize", cols: f.cols, rows: f.rows });
      }
    } else if (f.type === "take") {
      if (isDriver) this.sendLease(c);
      else if (f.force && c.principal.role !== "admin")
        this.refuse(c, "forbidden", "taking control by force needs an admin token");
      else if (f.force) this.setDriver(c, "forced");
      else if (this.holder === null) this.setDriver(c, "acquired");
      else {
        this.requester = c;
        if (this.driver) this.driver.peer.send({ type: "request", from: c.label });
        // Nobody to ask: the holder is away, and the lease comes to this client when its grace ends.
        else this.sendLease(c, `${this.holder} is away: the lease is yours when its grace ends`);
      }
    } else if (!isDriver) this.refuse(c, "conflict", "you do not hold the lease");
    else if (f.type === "decline") {
      const asked = this.requester;
      this.requester = undefined;
      if (asked && this.clients.has(asked)) asked.peer.send({ type: "declined", by: c.label });
    } else if (this.requester && this.clients.has(this.requester))
      this.setDriver(this.requester, "handed over");
    else this.setDriver(undefined, "released");
  }

  /** Moves the lease (to nobody when `to` is undefined), tells everyone, records it. */
  private setDriver(to: Client | undefined, reason: string): void {
    clearTimeout(this.grace);
    this.graceUntil = undefined;
    this.driver = to;
    if (this.requester === to) this.requester = undefined;
    const holder = to?.label ?? null;
    if (holder !== this.holder) {
      const from = this.holder;
      // The new holder acted (acquired, forced, handed over to); when the lease goes to nobody,
      // the one who held it did (released, or its connection dropped).
      const by = to?.audit ?? this.holderAudit;
      this.holder = holder;
      this.holderAudit = to?.audit;
      const sessionId = this.sessionId;
      this.recording = this.recording
        .then(() => this.events.append(sessionId, [{ type: "terminal.lease", data: { holder, reason } }]))
        // The lease lives in memory, not in a transaction: its audit row follows the event's commit.
        .then(() =>
          by
            ? AuditLog.record(this.events.db, by, {
                action: "terminal.lease",
                targetType: "session",
                targetId: sessionId,
                detail: { from, to: holder, reason },
              })
            : undefined,
        )
        .then(
          () => undefined,
          (err) => this.log.warn({ err, session: sessionId }, "terminal lease event not recorded"),
        );
    }
    this.broadcastLease();
  }

  /** The lease as it stands, to every client past its snapshot (the others get it with theirs). */
  private broadcastLease(): void {
    for (const o of this.clients) if (!o.pending) this.sendLease(o);
  }

  private sendLease(c: Client, message?: string): void {
    c.peer.send({
      type: "lease",
      holder: this.holder,
      you: this.driver === c,
      ...(this.graceUntil !== undefined ? { graceUntil: new Date(this.graceUntil).toISOString() } : {}),
      ...(message ? { message } : {}),
    });
  }

  private refuse(c: Client, code: string, message: string): void {
    c.peer.send({ type: "error", code, message });
  }

  private armIdle(): void {
    clearTimeout(this.idle);
    this.idle = setTimeout(() => {
      if (this.clients.size === 0) this.close();
    }, this.config.idleMs);
  }

  /** Kills the shell and drops every client; idempotent. */
  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      clearTimeout(this.grace);
      clearTimeout(this.idle);
      if (this.holder !== null) this.setDriver(undefined, "terminal closed");
      for (const c of this.clients) c.peer.close();
      this.clients.clear();
      try {
        this.pty.kill();
      } catch {
        // already gone
      }
      this.mirror.dispose();
      this.onGone();
    }
    return this.recording;
  }
}

export class TerminalService {
  private readonly terminals = new Map<string, Terminal>();
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly config: Config["terminal"],
    private readonly events: EventLog,
    bus: EventBus,
    private readonly log: Logger,
  ) {
    // A deleted session's shell goes with it, whoever deleted it and however.
    this.unsubscribe = bus.subscribeAll((e) => {
      if (e.type === "session.status" && e.data.status === "deleted") void this.closeSession(e.sessionId);
    });
  }

  /** Joins the session's terminal, starting its shell (in the workspace, through the driver) on first attach. */
  attach(
    sessionId: string,
    target: { cwd: string; spawn: (cols: number, rows: number) => PtyProcess },
    a: Attachment,
    peer: TerminalPeer,
  ) {
    const cwd = target.cwd;
    let t = this.terminals.get(sessionId);
    if (!t) {
      const created = new Terminal(sessionId, target.spawn, this.config, this.events, this.log, () => {
        if (this.terminals.get(sessionId) === created) this.terminals.delete(sessionId);
      });
      t = created;
      this.terminals.set(sessionId, t);
      this.log.info({ session: sessionId, cwd }, "terminal started");
    }
    const term = t;
    const c = term.join(a, peer);
    return {
      frame: (f: TerminalClientFrame) => term.frame(c, f),
      leave: () => term.leave(c),
    };
  }

  closeSession(sessionId: string): Promise<void> {
    return this.terminals.get(sessionId)?.close() ?? Promise.resolve();
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    await Promise.all([...this.terminals.values()].map((t) => t.close()));
  }
}
