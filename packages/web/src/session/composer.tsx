import { useCallback, useEffect, useRef, useState } from "react";
import { api, errorText } from "../api.ts";
import type { SessionStatus } from "../transcript.ts";
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

export function Composer({
  status,
  followUps,
}: {
  sessionId: string;
  status: SessionStatus | undefined;
  followUps: FollowUps;
}) {
  const [text, setText] = useState("");
  const busy = !ready(status);
  const submit = () => {
    const t = text.trim();
    if (!t) return;
    followUps.add(t);
    setText("");
  };
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        submit();
      }}
      className="sticky bottom-0 mt-2 grid gap-2 border-t border-stone-200 bg-stone-50 pt-3 pb-3 dark:border-stone-800 dark:bg-stone-950"
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
          placeholder={busy ? "The agent is working; this will be sent when it is done" : "Follow up…"}
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
  );
}
