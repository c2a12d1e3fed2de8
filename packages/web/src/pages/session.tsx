import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Link, Outlet, useParams } from "@tanstack/react-router";
import { createContext, type FormEvent, useContext, useEffect, useRef, useState } from "react";
import { api } from "../api.ts";
import type { PendingPermission, Row, Transcript } from "../transcript.ts";
import { Button, ErrorNote, inputClass, StatusBadge } from "../ui.tsx";
import { type Connection, useEventStream } from "../use-event-stream.ts";

// The stream lives in the layout so that switching to Changes and back keeps it (and its position).
const StreamContext = createContext<{ transcript: Transcript; connection: Connection } | null>(null);

const tab =
  "border-b-2 border-transparent px-1 pb-2 text-sm text-stone-600 hover:text-stone-900 dark:text-stone-400 dark:hover:text-white";
const activeTab = "!border-stone-900 font-medium !text-stone-900 dark:!border-white dark:!text-white";

export function SessionLayout() {
  const { id } = useParams({ from: "/s/$id" });
  const stream = useEventStream(id);
  const qc = useQueryClient();
  const session = useQuery({ queryKey: ["session", id], queryFn: () => api.sessions.get(id) });
  const status = stream.transcript.status ?? session.data?.status;
  // The stream says when something changed; the session row (title, usage) is re-read then.
  useEffect(() => {
    if (stream.transcript.status) void qc.invalidateQueries({ queryKey: ["session", id] });
  }, [stream.transcript.status, qc, id]);
  const abort = useMutation({ mutationFn: () => api.sessions.abort(id) });
  const busy = status === "running" || status === "waiting_permission";
  return (
    <StreamContext.Provider value={stream}>
      <div className="grid grid-cols-[minmax(0,1fr)] gap-4">
        <div className="flex flex-wrap items-start gap-3">
          <div className="min-w-0 flex-1 basis-64">
            <h1 className="truncate text-lg font-semibold">{session.data?.title ?? id}</h1>
            <p className="truncate font-mono text-xs text-stone-500">
              {session.data
                ? `${session.data.repo} · ${session.data.branch ?? session.data.baseRef} · ${session.data.model}`
                : ""}
            </p>
          </div>
          <div className="flex items-center gap-2">
            <ConnectionDot connection={stream.connection} />
            {status && <StatusBadge status={status} />}
            {busy && (
              <Button tone="danger" onClick={() => abort.mutate()} disabled={abort.isPending}>
                Abort
              </Button>
            )}
          </div>
        </div>
        <ErrorNote error={session.error ?? abort.error} />
        <nav className="flex gap-5 border-b border-stone-200 dark:border-stone-800">
          <Link
            to="/s/$id"
            params={{ id }}
            activeOptions={{ exact: true }}
            className={tab}
            activeProps={{ className: activeTab }}
          >
            Conversation
          </Link>
          <Link to="/s/$id/changes" params={{ id }} className={tab} activeProps={{ className: activeTab }}>
            Changes
          </Link>
          <Link to="/s/$id/terminal" params={{ id }} className={tab} activeProps={{ className: activeTab }}>
            Terminal
          </Link>
        </nav>
        <Outlet />
      </div>
    </StreamContext.Provider>
  );
}

function ConnectionDot({ connection }: { connection: Connection }) {
  if (connection === "live")
    return (
      <span className="flex items-center gap-1 text-xs text-stone-500" title="Streaming live">
        <span className="size-2 rounded-full bg-emerald-500" /> live
      </span>
    );
  return (
    <span
      role="status"
      className="flex items-center gap-1 text-xs font-medium text-amber-700 dark:text-amber-300"
    >
      <span className="size-2 animate-pulse rounded-full bg-amber-500" />
      {connection === "reconnecting" ? "Reconnecting…" : "Connecting…"}
    </span>
  );
}

const TOOL_DOT: Record<string, string> = {
  pending: "bg-stone-400",
  running: "bg-sky-500 animate-pulse",
  completed: "bg-emerald-500",
  error: "bg-red-500",
};

function RowView({ row }: { row: Row }) {
  switch (row.kind) {
    case "user":
      return (
        <div className="ml-auto max-w-[85%] whitespace-pre-wrap rounded-lg bg-stone-900 px-3 py-2 text-sm text-white dark:bg-stone-100 dark:text-stone-900">
          {row.text}
        </div>
      );
    case "text":
      return (
        <div data-testid="assistant-text" className="whitespace-pre-wrap text-sm leading-relaxed">
          {row.text}
        </div>
      );
    case "reasoning":
      return (
        <div className="whitespace-pre-wrap border-l-2 border-stone-300 pl-3 text-xs italic text-stone-500">
          {row.text}
        </div>
      );
    case "tool":
      return (
        <div
          data-testid="tool-row"
          className="flex items-center gap-2 rounded-md border border-stone-200 bg-white px-3 py-1.5 font-mono text-xs dark:border-stone-800 dark:bg-stone-900"
        >
          <span className={`size-2 shrink-0 rounded-full ${TOOL_DOT[row.status]}`} />
          <span className="font-semibold">{row.tool}</span>
          <span className="min-w-0 flex-1 truncate text-stone-500">{row.error ?? row.title ?? ""}</span>
          <span className="text-stone-400">{row.status}</span>
        </div>
      );
    case "notice":
      return (
        <p
          className={`text-xs ${row.tone === "error" ? "text-red-700 dark:text-red-300" : "text-stone-500"}`}
        >
          {row.text}
        </p>
      );
  }
}

function PermissionCard({ sessionId, p }: { sessionId: string; p: PendingPermission }) {
  const [rejecting, setRejecting] = useState(false);
  const [message, setMessage] = useState("");
  const reply = useMutation({
    mutationFn: (body: { reply: "once" | "always" | "reject"; message?: string }) =>
      api.sessions.reply(sessionId, p.requestId, body),
  });
  const target = p.patterns.join(", ") || String(p.metadata.filepath ?? p.metadata.command ?? "");
  return (
    <div
      role="alertdialog"
      aria-label="Permission request"
      className="rounded-lg border-2 border-amber-400 bg-amber-50 p-4 dark:border-amber-600 dark:bg-amber-950/40"
    >
      <p className="text-sm font-semibold text-amber-950 dark:text-amber-100">
        The agent asks permission to {p.permission}
      </p>
      {target && (
        <p className="mt-1 break-all font-mono text-xs text-amber-900 dark:text-amber-200">{target}</p>
      )}
      <div className="mt-3 flex flex-wrap gap-2">
        <Button tone="primary" disabled={reply.isPending} onClick={() => reply.mutate({ reply: "once" })}>
          Allow once
        </Button>
        <Button disabled={reply.isPending} onClick={() => reply.mutate({ reply: "always" })}>
          Always allow
        </Button>
        <Button tone="danger" disabled={reply.isPending} onClick={() => setRejecting((r) => !r)}>
          Reject…
        </Button>
      </div>
      {rejecting && (
        <form
          className="mt-3 grid gap-2"
          onSubmit={(e) => {
            e.preventDefault();
            reply.mutate({ reply: "reject", ...(message.trim() ? { message: message.trim() } : {}) });
          }}
        >
          <textarea
            rows={2}
            placeholder="Tell the agent what to do instead (optional)"
            value={message}
            onChange={(e) => setMessage(e.target.value)}
            className={inputClass}
          />
          <Button tone="danger" type="submit" disabled={reply.isPending} className="justify-self-start">
            Reject with message
          </Button>
        </form>
      )}
      <div className="mt-2">
        <ErrorNote error={reply.error} />
      </div>
    </div>
  );
}

export function ConversationPage() {
  const { id } = useParams({ from: "/s/$id" });
  const { transcript } = useContext(StreamContext)!;
  const [text, setText] = useState("");
  const send = useMutation({
    mutationFn: () => api.sessions.send(id, { text }),
    onSuccess: () => setText(""),
  });
  const end = useRef<HTMLDivElement>(null);
  // Follow the conversation as it grows, the way a chat does: the deps are the trigger, not inputs.
  // biome-ignore lint/correctness/useExhaustiveDependencies: re-run whenever rows or requests change
  useEffect(() => {
    end.current?.scrollIntoView({ block: "end" });
  }, [transcript.rows, transcript.permissions]);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (text.trim()) send.mutate();
  };
  const busy =
    transcript.status === "running" ||
    transcript.status === "waiting_permission" ||
    transcript.status === "provisioning";
  return (
    <div className="grid grid-cols-[minmax(0,1fr)] gap-3">
      {transcript.rows.length === 0 && <p className="text-sm text-stone-500">Waiting for the agent…</p>}
      {transcript.rows.map((r) => (
        <RowView key={r.key} row={r} />
      ))}
      {transcript.permissions.map((p) => (
        <PermissionCard key={p.requestId} sessionId={id} p={p} />
      ))}
      <form
        onSubmit={submit}
        className="sticky bottom-0 mt-2 grid gap-2 border-t border-stone-200 bg-stone-50 pt-3 pb-3 dark:border-stone-800 dark:bg-stone-950"
      >
        <div className="flex gap-2">
          <textarea
            name="followup"
            rows={2}
            placeholder={busy ? "The agent is working; send when it is done" : "Follow up…"}
            value={text}
            onChange={(e) => setText(e.target.value)}
            onKeyDown={(e) => {
              if (e.key === "Enter" && (e.metaKey || e.ctrlKey)) submit(e);
            }}
            className={inputClass}
          />
          <Button
            tone="primary"
            type="submit"
            disabled={send.isPending || busy || !text.trim()}
            className="self-end"
          >
            Send
          </Button>
        </div>
        <ErrorNote error={send.error} />
      </form>
      <div ref={end} />
    </div>
  );
}
