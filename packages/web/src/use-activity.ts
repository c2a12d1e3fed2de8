import type { ActivityNotice } from "@flotilla/contracts";
import { type QueryClient, useQueryClient } from "@tanstack/react-query";
import { useEffect, useSyncExternalStore } from "react";
import type { Connection } from "./use-event-stream.ts";

// What each kind of notice makes stale. The queries are keyed by these prefixes across the pages.
const EVERYTHING = [
  ["sessions"],
  ["session"],
  ["tasks"],
  ["task"],
  ["overview"],
  ["usage"],
  ["harnesses"],
  ["webhook-deliveries"],
];
// Deliveries follow task transitions and session status changes, so either may add one. A session's
// turn ending follows its model calls, so the usage (pages and meters) is re-read then too.
const staleFor = (n: ActivityNotice): string[][] =>
  n.kind === "session"
    ? [["sessions"], ["session", n.id], ["overview"], ["webhook-deliveries"], ["usage"]]
    : [["tasks"], ["task", n.id], ["overview"], ["webhook-deliveries"], ["usage"]];

let state: Connection = "connecting";
const watchers = new Set<() => void>();
const setState = (s: Connection) => {
  state = s;
  for (const w of watchers) w();
};

/** The activity feed's connection, for a global "reconnecting" indicator. */
export function useActivityConnection(): Connection {
  return useSyncExternalStore(
    (fn) => {
      watchers.add(fn);
      return () => watchers.delete(fn);
    },
    () => state,
  );
}

/**
 * Keeps every list, count and header live without polling: the server's activity feed says which
 * session or task changed, and the queries showing it are invalidated (TanStack Query re-reads the
 * ones on screen). Notices arriving together are coalesced into one invalidation per key. When the
 * feed (re)opens, everything is re-read, because what changed while it was down was not told.
 */
export function useActivity(enabled: boolean): void {
  const qc = useQueryClient();
  useEffect(() => {
    if (!enabled) return;
    let es: EventSource | undefined;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let flush: ReturnType<typeof setTimeout> | undefined;
    const pending = new Map<string, string[]>();
    const stale = (keys: string[][]) => {
      for (const k of keys) pending.set(JSON.stringify(k), k);
      flush ??= setTimeout(() => {
        flush = undefined;
        invalidate(qc, [...pending.values()]);
        pending.clear();
      }, 100);
    };
    const onNotice = (m: MessageEvent<string>) => stale(staleFor(JSON.parse(m.data) as ActivityNotice));
    const open = () => {
      const source = new EventSource("/activity", { withCredentials: true });
      es = source;
      source.addEventListener("session", onNotice as EventListener);
      source.addEventListener("task", onNotice as EventListener);
      source.onopen = () => {
        setState("live");
        stale(EVERYTHING);
      };
      source.onerror = () => {
        setState("reconnecting");
        // EventSource retries on its own unless the server answered with an error status.
        if (source.readyState === EventSource.CLOSED) retry = setTimeout(open, 2000);
      };
    };
    open();
    return () => {
      es?.close();
      clearTimeout(retry);
      clearTimeout(flush);
      setState("connecting");
    };
  }, [enabled, qc]);
}

function invalidate(qc: QueryClient, keys: string[][]) {
  for (const queryKey of keys) void qc.invalidateQueries({ queryKey });
}
