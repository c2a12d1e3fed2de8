import type { SessionStatus } from "@flotilla/contracts/transcript";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { type RefObject, useCallback, useEffect, useRef, useState } from "react";
import { api, errorText } from "../api.ts";
import { Button, ErrorNote, inputClass } from "../ui.tsx";

export interface FollowUps {
  queued: string[];
  add(text: string): void;
  remove(i: number): void;
  /** Set when the last send failed: sending stops until the person acts. */
  error: string | undefined;
  sending: boolean;
}

const storeKey = (id: string) => `flotilla.followups.${id}`;
const ready = (s: SessionStatus | undefined) => s === "idle" || s === "interrupted";

/**
 * Follow-ups written while the agent is busy wait here, in order, and go out one at a time as soon
 * as it is idle again. The server refuses a message to a busy session (session_busy), so the queue
 * is the page's; it is kept in sessionStorage so a reload of the tab does not drop it.
 */
export function useFollowUps(sessionId: string, status: SessionStatus | undefined): FollowUps {
  const [queued, setQueued] = useState<string[]>(() => {
    try {
      return JSON.parse(sessionStorage.getItem(storeKey(sessionId)) ?? "[]") as string[];
    } catch {
      return [];
    }
  });
  const [error, setError] = useState<string>();
  const [sending, setSending] = useState(false);
  const inFlight = useRef(false);
  // After a send, the next waits until the turn it started has been seen to begin (and then end):
  // the idle status still on screen is from before that send.
  const awaitingTurn = useRef(false);
  if (!ready(status)) awaitingTurn.current = false;
  useEffect(() => {
    if (queued.length) sessionStorage.setItem(storeKey(sessionId), JSON.stringify(queued));
    else sessionStorage.removeItem(storeKey(sessionId));
  }, [queued, sessionId]);
  useEffect(() => {
    if (!ready(status) || queued.length === 0 || inFlight.current || awaitingTurn.current || error) return;
    inFlight.current = true;
    setSending(true);
    const text = queued[0]!;
    api.sessions
      .send(sessionId, { text })
      .then(
        () => {
          awaitingTurn.current = true;
          setQueued((q) => (q[0] === text ? q.slice(1) : q));
        },
        (e) => setError(errorText(e)),
      )
      .finally(() => {
        inFlight.current = false;
        setSending(false);
      });
  }, [status, queued, sessionId, error]);
  const add = useCallback((text: string) => {
    setError(undefined);
    setQueued((q) => [...q, text]);
  }, []);
  const remove = useCallback((i: number) => {
    setError(undefined);
    setQueued((q) => q.filter((_, j) => j !== i));
  }, []);
  return { queued, add, remove, error, sending };
}

/** What stopped the session, as the composer says it: a failed start or an interrupted turn. */
export interface Failure {
  status: "failed" | "interrupted";
  message: string | undefined;
}

/**
 * A session that failed to start, or whose turn was cut short, says so where the person would type,
 * with the way forward: Retry runs the last prompt again (a failed start starts over).
 */
function FailurePanel({ sessionId, failure }: { sessionId: string; failure: Failure }) {
  const qc = useQueryClient();
  const retry = useMutation({
    mutationFn: () => api.sessions.retry(sessionId),
    // The answer is the session as the retry left it; the stream then says what follows.
    onSuccess: (s) => qc.setQueryData(["session", sessionId], s),
  });
  const failed = failure.status === "failed";
  return (
    <div
      role="status"
      aria-label={failed ? "Session failed" : "Turn interrupted"}
      className="flex flex-wrap items-center gap-3 rounded-md border border-red-200 bg-red-50 px-3 py-2 text-sm text-red-900 dark:border-red-900 dark:bg-red-950/50 dark:text-red-200"
    >
      <p className="min-w-0 flex-1 basis-64 wrap-anywhere">
        <span className="font-medium">
          {failed ? "The session could not start" : "The turn was interrupted"}
          {failure.message ? ": " : "."}
        </span>
        {failure.message}
      </p>
      <Button tone="primary" onClick={() => retry.mutate()} disabled={retry.isPending || retry.isSuccess}>
        {retry.isPending || retry.isSuccess ? "Retrying…" : "Retry"}
      </Button>
      {retry.error && (
        <p className="basis-full text-xs text-red-800 dark:text-red-200">
          Retry failed: {errorText(retry.error)}
        </p>
      )}
    </div>
  );
}

/**
 * The pinned composer covers the bottom of the page: the root's scroll-padding follows its height,
 * so whatever is scrolled into view (a focused field, the reject form) lands above it.
 */
function useScrollPaddingFor(el: RefObject<HTMLElement | null>) {
  useEffect(() => {
    const node = el.current;
    if (!node) return;
    const root = document.documentElement;
    const ro = new ResizeObserver(() => {
      root.style.scrollPaddingBottom = `${node.offsetHeight + 8}px`;
    });
    ro.observe(node);
    return () => {
      ro.disconnect();
      root.style.scrollPaddingBottom = "";
    };
  }, [el]);
}

const placeholderFor = (status: SessionStatus | undefined) =>
  ready(status)
    ? "Follow up…"
    : status === "queued" || status === "provisioning"
      ? "The session is starting; this will be sent when it is ready"
      : "The agent is working; this will be sent when it is done";

export function Composer({
  sessionId,
  status,
  failure,
  followUps,
}: {
  sessionId: string;
  status: SessionStatus | undefined;
  failure?: Failure;
  followUps: FollowUps;
}) {
  const [text, setText] = useState("");
  const pinned = useRef<HTMLDivElement>(null);
  useScrollPaddingFor(pinned);
  const busy = !ready(status);
  const submit = () => {
    const t = text.trim();
    if (!t) return;
    followUps.add(t);
    setText("");
  };
  return (
    <div
      ref={pinned}
      className="sticky bottom-0 mt-2 grid gap-2 border-t border-stone-200 bg-stone-50 pt-3 pb-3 dark:border-stone-800 dark:bg-stone-950"
    >
      {failure && <FailurePanel sessionId={sessionId} failure={failure} />}
      {/* A session that could not start takes no message: Retry is the way on. */}
      {failure?.status !== "failed" && (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            submit();
          }}
          className="grid gap-2"
        >
          {followUps.queued.length > 0 && (
            <ul aria-label="Queued follow-ups" className="grid gap-1">
              {followUps.queued.map((q, i) => (
                <li
                  // biome-ignore lint/suspicious/noArrayIndexKey: the queue's order is its identity
                  key={i}
                  data-testid="queued"
                  className="flex items-center gap-2 rounded-md border border-dashed border-stone-300 px-3 py-1.5 text-sm dark:border-stone-700"
                >
                  <span className="text-xs font-medium text-stone-500">
                    {i === 0 && followUps.sending ? "sending" : "queued"}
                  </span>
                  <span className="min-w-0 flex-1 truncate">{q}</span>
                  <button
                    type="button"
                    aria-label={`Remove queued follow-up: ${q}`}
                    onClick={() => followUps.remove(i)}
                    className="text-xs text-stone-500 hover:text-stone-900 dark:hover:text-white"
                  >
                    Remove
                  </button>
                </li>
              ))}
            </ul>
          )}
          <div className="flex gap-2">
            <textarea
              name="followup"
              aria-label="Follow-up"
              rows={2}
              placeholder={placeholderFor(status)}
              value={text}
              onChange={(e) => setText(e.target.value)}
              onKeyDown={(e) => {
                if (e.key === "Enter" && (e.metaKey || e.ctrlKey)) {
                  e.preventDefault();
                  submit();
                }
              }}
              className={inputClass}
            />
            <Button tone="primary" type="submit" disabled={!text.trim()} className="self-end">
              {busy ? "Queue" : "Send"}
            </Button>
          </div>
          {followUps.error && <ErrorNote error={`Not sent: ${followUps.error}`} />}
        </form>
      )}
    </div>
  );
}
