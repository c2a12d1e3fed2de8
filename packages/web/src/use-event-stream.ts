import type { SessionEvent } from "@flotilla/client";
import { EVENT_TYPES, sseEventName } from "@flotilla/contracts/light";
import { emptyTranscript, fold, type Transcript } from "@flotilla/contracts/transcript";
import { useEffect, useState } from "react";

export type Connection = "connecting" | "live" | "reconnecting";

// The server names each SSE event by its type (`error` as `session.error`, clear of EventSource's own
// failure event), and EventSource only delivers named events to listeners registered under that name.
const NAMES = EVENT_TYPES.map(sseEventName);

/**
 * The session's events over EventSource, folded into a transcript. EventSource sends the cookie and,
 * on its own reconnects, Last-Event-ID, so the server resumes exactly after the last event seen.
 * When the browser gives up (an HTTP error closes it for good), we open a new one with `after`.
 */
export function useEventStream(sessionId: string): { transcript: Transcript; connection: Connection } {
  const [transcript, setTranscript] = useState<Transcript>(emptyTranscript);
  const [connection, setConnection] = useState<Connection>("connecting");
  useEffect(() => {
    setTranscript(emptyTranscript);
    setConnection("connecting");
    let last = 0;
    let pending: SessionEvent[] = [];
    let flushTimer: ReturnType<typeof setTimeout> | undefined;
    let retryTimer: ReturnType<typeof setTimeout> | undefined;
    let es: EventSource | undefined;
    let stopped = false;
    const flush = () => {
      flushTimer = undefined;
      const batch = pending;
      pending = [];
      setTranscript((t) => fold(t, batch));
    };
    const onEvent = (m: MessageEvent<string>) => {
      const e = JSON.parse(m.data) as SessionEvent;
      if (e.seq <= last) return;
      last = e.seq;
      pending.push(e);
      flushTimer ??= setTimeout(flush, 16);
    };
    const open = () => {
      const url = `/sessions/${encodeURIComponent(sessionId)}/events${last ? `?after=${last}` : ""}`;
      const source = new EventSource(url, { withCredentials: true });
      es = source;
      for (const t of NAMES) source.addEventListener(t, onEvent as EventListener);
      source.onopen = () => setConnection("live");
      source.onerror = () => {
        if (stopped) return;
        setConnection("reconnecting");
        if (source.readyState === EventSource.CLOSED) {
          retryTimer = setTimeout(open, 2000);
        }
      };
    };
    open();
    return () => {
      stopped = true;
      es?.close();
      clearTimeout(flushTimer);
      clearTimeout(retryTimer);
    };
  }, [sessionId]);
  return { transcript, connection };
}
