import type { Session } from "@flotilla/client";
import type { Transcript, Usage } from "@flotilla/contracts/transcript";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Link, Outlet, useNavigate, useParams } from "@tanstack/react-router";
import { createContext, useContext, useEffect } from "react";
import { api } from "../api.ts";
import { SessionPullRequest, useBranchFreshness } from "../session/branch.tsx";
import { BudgetMeter } from "../session/budget-meter.tsx";
import { Composer, type Failure, type FollowUps, useFollowUps } from "../session/composer.tsx";
import { Conversation } from "../session/conversation.tsx";
import { Button, ErrorNote, StatusBadge } from "../ui.tsx";
import { type Connection, useEventStream } from "../use-event-stream.ts";

// The stream and the queued follow-ups live in the layout, so that switching to Changes or the
// terminal and back keeps them (and the stream's position).
const SessionContext = createContext<{
  transcript: Transcript;
  connection: Connection;
  followUps: FollowUps;
  session: Session | undefined;
} | null>(null);

/** The session's stream and row, for the layout's tabs (Changes refreshes itself on its events). */
export function useSessionContext() {
  const ctx = useContext(SessionContext);
  if (!ctx) throw new Error("useSessionContext outside the session layout");
  return ctx;
}

const tab =
  "border-b-2 border-transparent px-1 pb-2 text-sm text-stone-600 hover:text-stone-900 dark:text-stone-400 dark:hover:text-white";
const activeTab = "!border-stone-900 font-medium !text-stone-900 dark:!border-white dark:!text-white";

/** The tab's title and icon say when the agent waits on a person, so a background tab is noticed. */
function useAttentionSignal(needsInput: boolean, title: string | undefined) {
  useEffect(() => {
    const icon = document.querySelector<HTMLLinkElement>('link[rel="icon"]');
    document.title = `${needsInput ? "● Needs approval · " : ""}${title ?? "Session"} · Flotilla`;
    if (icon) icon.href = needsInput ? "/favicon-alert.svg" : "/favicon.svg";
    return () => {
      document.title = "Flotilla";
      if (icon) icon.href = "/favicon.svg";
    };
  }, [needsInput, title]);
}

const n = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

// Tokens only: what the session cost is the model gateway's record (the Spent bar below), which is
// what budgets are held to; the harness's own estimate of it may differ, or be zero.
function UsageMeter({ usage }: { usage: Usage }) {
  const total = usage.input + usage.output + usage.reasoning + usage.cache;
  return (
    <span
      data-testid="usage"
      className="font-mono text-xs text-stone-500"
      title={`input ${usage.input}, output ${usage.output}, reasoning ${usage.reasoning}, cache ${usage.cache} tokens (as the agent counted them)`}
    >
      {n.format(total)} tokens
    </span>
  );
}

export function SessionLayout() {
  const { id } = useParams({ from: "/s/$id" });
  const stream = useEventStream(id);
  const qc = useQueryClient();
  const navigate = useNavigate();
  const session = useQuery({ queryKey: ["session", id], queryFn: () => api.sessions.get(id) });
  const status = stream.transcript.status ?? session.data?.status;
  // The stream says when something changed; the session row (title, usage) is re-read then.
  useEffect(() => {
    if (stream.transcript.status) void qc.invalidateQueries({ queryKey: ["session", id] });
  }, [stream.transcript.status, qc, id]);
  const followUps = useFollowUps(id, status);
  const abort = useMutation({ mutationFn: () => api.sessions.abort(id) });
  const fork = useMutation({
    mutationFn: () => api.sessions.fork(id),
    onSuccess: (s) => navigate({ to: "/s/$id", params: { id: s.id } }),
  });
  const busy = status === "running" || status === "waiting_permission";
  useBranchFreshness(id, status, stream.transcript.gitSeq);
  useAttentionSignal(stream.transcript.permissions.length > 0, session.data?.title);
  return (
    <SessionContext.Provider value={{ ...stream, followUps, session: session.data }}>
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
          <div className="flex flex-wrap items-center gap-2">
            <SessionPullRequest sessionId={id} status={status} />
            <UsageMeter usage={stream.transcript.usage} />
            <ConnectionDot connection={stream.connection} />
            {status && <StatusBadge status={status} />}
            {busy && (
              <Button tone="danger" onClick={() => abort.mutate()} disabled={abort.isPending}>
                Abort
              </Button>
            )}
            {!busy && status !== "provisioning" && status !== "failed" && (
              <Button
                onClick={() => fork.mutate()}
                disabled={fork.isPending}
                title="A new session with this whole conversation"
              >
                Fork
              </Button>
            )}
          </div>
        </div>
        <BudgetMeter sessionId={id} since={session.data?.createdAt} spendSeq={stream.transcript.spendSeq} />
        <ErrorNote error={session.error ?? abort.error ?? fork.error} />
        <nav aria-label="Session" className="flex gap-5 border-b border-stone-200 dark:border-stone-800">
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
    </SessionContext.Provider>
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

export function ConversationPage() {
  const { id } = useParams({ from: "/s/$id" });
  const ctx = useContext(SessionContext)!;
  const status = ctx.transcript.status ?? ctx.session?.status;
  // What stopped the session: the stream's last status says it; before the stream has, the row does.
  const error = ctx.transcript.status ? ctx.transcript.statusError : (ctx.session?.error ?? undefined);
  const failure: Failure | undefined =
    status === "failed" || status === "interrupted" ? { status, message: error?.message } : undefined;
  return (
    <div className="grid grid-cols-[minmax(0,1fr)] gap-3">
      <Conversation sessionId={id} transcript={ctx.transcript} failure={failure?.message} />
      <Composer sessionId={id} status={status} failure={failure} followUps={ctx.followUps} />
    </div>
  );
}
