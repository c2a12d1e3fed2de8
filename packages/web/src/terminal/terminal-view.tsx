import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import "@xterm/xterm/css/xterm.css";
import { useQuery } from "@tanstack/react-query";
import { useEffect, useRef, useState } from "react";
import { api } from "../api.ts";
import { Button } from "../ui.tsx";
import { type TerminalConnection as Conn, TerminalConnection, type TerminalState } from "./connection.ts";

// This module is loaded lazily by pages/terminal.tsx: xterm's code and CSS stay out of the first load.

/**
 * One client id per session for the page's life: switching tabs and back, or a dropped socket, finds
 * the lease kept for it during the server's grace period. Not in sessionStorage, which a duplicated
 * browser tab copies: two tabs with one id would pass for one client.
 */
const clientIds = new Map<string, string>();
function clientId(sessionId: string): string {
  let id = clientIds.get(sessionId);
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(6));
    id = `web-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
    clientIds.set(sessionId, id);
  }
  return id;
}

// stone-950 / stone-200, the page's own dark tones.
const THEME = { background: "#0c0a09", foreground: "#e7e5e4", cursor: "#e7e5e4" };

/** A lease holder's label (`<token id>/<client id>`) in words, from this viewer's side. */
function useWho() {
  const me = useQuery({ queryKey: ["whoami"], queryFn: () => api.auth.whoami(), staleTime: Infinity });
  const admin = me.data?.role === "admin";
  // Only admins may list tokens; asking as a member would only earn a 403.
  const tokens = useQuery({ queryKey: ["tokens"], queryFn: () => api.tokens.list(), enabled: admin });
  const who = (label: string | null): string => {
    if (label === null) return "nobody";
    const [tokenId = label, client = ""] = label.split("/");
    const where = client.startsWith("cli-") ? "the CLI" : client.startsWith("web-") ? "a browser" : "";
    if (tokenId === me.data?.tokenId) return `you (in ${where || "another client"})`;
    const name = tokens.data?.find((t) => t.id === tokenId)?.name ?? tokenId;
    return where ? `${name} (${where})` : name;
  };
  return { who, admin };
}

export default function TerminalView({ sessionId }: { sessionId: string }) {
  const host = useRef<HTMLElement>(null);
  const [conn, setConn] = useState<Conn | null>(null);
  const [state, setState] = useState<TerminalState | null>(null);

  useEffect(() => {
    const el = host.current!;
    const term = new Terminal({
      theme: THEME,
      fontFamily: 'ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace',
      fontSize: 13,
      cursorBlink: true,
      scrollback: 5000,
      // Read-only until the server says this tab holds the lease.
      disableStdin: true,
    });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(el);
    let driving = false;
    // Only the driver sizes the shell, to its own box; a viewer shows the driver's size as it is.
    const refit = () => {
      if (!driving) return;
      fit.fit();
      c.resize(term.cols, term.rows);
    };
    const c = new TerminalConnection(
      sessionId,
      clientId(sessionId),
      {
        snapshot: (data, cols, rows) => {
          term.reset();
          if (cols !== term.cols || rows !== term.rows) term.resize(cols, rows);
          term.write(data);
        },
        output: (data) => term.write(data),
        resize: (cols, rows) => term.resize(cols, rows),
      },
      (s) => {
        const was = driving;
        driving = s.you;
        term.options.disableStdin = !s.you;
        if (s.you && !was) {
          refit();
          term.focus();
        }
        setState(s);
      },
    );
    setConn(c);
    const input = term.onData((d) => c.input(d));
    let frame = 0;
    const observer = new ResizeObserver(() => {
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(refit);
    });
    observer.observe(el);
    c.start();
    return () => {
      setConn(null);
      observer.disconnect();
      cancelAnimationFrame(frame);
      input.dispose();
      c.stop();
      term.dispose();
    };
  }, [sessionId]);

  const s = state;
  return (
    <div className="grid grid-cols-[minmax(0,1fr)] gap-3">
      {s ? <Controls s={s} conn={conn} /> : <p className="text-sm text-stone-500">Connecting…</p>}
      <div className="relative overflow-auto rounded-lg bg-[#0c0a09] p-2">
        <section
          ref={host}
          data-testid="terminal"
          aria-label={s?.you ? "Terminal" : "Terminal (read-only)"}
          className="h-[max(16rem,calc(100dvh-20rem))]"
        />
        {s && (s.link === "connecting" || s.link === "reconnecting") && (
          <div className="pointer-events-none absolute inset-x-0 top-2 flex justify-center">
            <span
              role="status"
              data-testid="terminal-link"
              className="flex items-center gap-1 rounded-full bg-amber-100 px-3 py-1 text-xs font-medium text-amber-900 shadow"
            >
              <span className="size-2 animate-pulse rounded-full bg-amber-500" />
              {s.link === "reconnecting" ? "Reconnecting…" : "Connecting…"}
            </span>
          </div>
        )}
      </div>
    </div>
  );
}

function Controls({ s, conn }: { s: TerminalState; conn: Conn | null }) {
  const { who, admin } = useWho();
  const live = s.link === "live";
  const holder = s.you ? "you" : who(s.holder);
  return (
    <>
      <div className="flex flex-wrap items-center gap-x-3 gap-y-2 rounded-lg border border-stone-200 bg-white px-3 py-2 text-sm dark:border-stone-800 dark:bg-stone-900">
        <span
          data-testid="terminal-role"
          className={`inline-flex shrink-0 items-center rounded-full px-2 py-0.5 text-xs font-medium ${
            s.you
              ? "bg-emerald-100 text-emerald-800 dark:bg-emerald-900/50 dark:text-emerald-200"
              : "bg-stone-200 text-stone-700 dark:bg-stone-800 dark:text-stone-300"
          }`}
        >
          {s.you ? "Driving" : "Watching · read-only"}
        </span>
        <span data-testid="terminal-lease" className="min-w-0 text-stone-600 dark:text-stone-400">
          {s.you
            ? "You hold the lease: your keys go to the shell."
            : s.holder === null
              ? "Nobody is driving."
              : `Driving: ${holder}. Your keys are not sent.`}
        </span>
        <span className="ml-auto flex flex-wrap gap-2">
          {live && !s.you && (
            <Button tone="primary" disabled={s.ask === "pending"} onClick={() => conn?.take()}>
              Take control
            </Button>
          )}
          {live && !s.you && admin && s.holder !== null && (
            <Button
              tone="danger"
              title="Admins: take the lease at once, without asking"
              onClick={() => conn?.take(true)}
            >
              Force
            </Button>
          )}
          {live && s.you && <Button onClick={() => conn?.release()}>Release control</Button>}
        </span>
      </div>
      <AskNote s={s} holder={holder} />
      {s.you && s.request && (
        <div
          role="alertdialog"
          aria-label="Control request"
          className="flex flex-wrap items-center gap-3 rounded-lg border-2 border-amber-400 bg-amber-50 px-3 py-2 text-sm dark:border-amber-600 dark:bg-amber-950/40"
        >
          <span className="min-w-0 flex-1 font-medium text-amber-950 dark:text-amber-100">
            {who(s.request)} asks to take control.
          </span>
          <Button tone="primary" onClick={() => conn?.release()}>
            Hand over
          </Button>
          <Button onClick={() => conn?.decline()}>Keep control</Button>
        </div>
      )}
      {s.error && (
        <p
          role="alert"
          className="rounded-md bg-red-50 px-3 py-2 text-sm text-red-800 dark:bg-red-950 dark:text-red-200"
        >
          {s.error}
        </p>
      )}
      {(s.link === "exited" || s.link === "failed") && (
        <div className="flex flex-wrap items-center gap-3 rounded-md bg-stone-100 px-3 py-2 text-sm dark:bg-stone-900">
          <span className="flex-1">
            {s.link === "exited"
              ? `The shell exited${s.exitCode ? ` with code ${s.exitCode}` : ""}.`
              : "The terminal is not available."}
          </span>
          <Button onClick={() => conn?.restart()}>
            {s.link === "exited" ? "Start a new shell" : "Try again"}
          </Button>
        </div>
      )}
    </>
  );
}

function AskNote({ s, holder }: { s: TerminalState; holder: string }) {
  const text = {
    none: "",
    pending: `Asked ${holder} for control; waiting for an answer…`,
    granted: "Control granted: you are driving.",
    declined: `${holder} kept control. You can ask again.`,
    unanswered: `${holder} has not handed over control (they may have declined). You can ask again.`,
    superseded: `Control went to ${holder} before your request was answered.`,
  }[s.ask];
  if (!text) return null;
  return (
    <p data-testid="terminal-ask" role="status" className="text-sm text-stone-600 dark:text-stone-400">
      {text}
    </p>
  );
}
