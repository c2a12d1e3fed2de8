import type { PendingPermission, Row, Todo, Transcript } from "@flotilla/contracts/transcript";
import { useMutation } from "@tanstack/react-query";
import { useNavigate } from "@tanstack/react-router";
import { useWindowVirtualizer } from "@tanstack/react-virtual";
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from "react";
import { api } from "../api.ts";
import { Button, ErrorNote, inputClass } from "../ui.tsx";
import { InlineDiff, linesOfPatch } from "./diff-view.tsx";
import { Markdown, useMarkdownReady } from "./lazy-markdown.tsx";
import { ToolCall } from "./tool-row.tsx";

function ForkButton({ sessionId, messageId }: { sessionId: string; messageId: string }) {
  const navigate = useNavigate();
  const fork = useMutation({
    mutationFn: () => api.sessions.fork(sessionId, messageId),
    onSuccess: (s) => navigate({ to: "/s/$id", params: { id: s.id } }),
  });
  return (
    <span className="flex items-center gap-2">
      <button
        type="button"
        onClick={() => fork.mutate()}
        disabled={fork.isPending}
        title="A new session with the conversation before this message"
        className="text-xs text-stone-500 underline-offset-2 hover:text-stone-900 hover:underline disabled:opacity-50 dark:hover:text-white"
      >
        {fork.isPending ? "Forking…" : "Fork from here"}
      </button>
      {fork.error && <span className="text-xs text-red-700">{(fork.error as Error).message}</span>}
    </span>
  );
}

function RowView({ row, sessionId, waiting }: { row: Row; sessionId: string; waiting: boolean }) {
  switch (row.kind) {
    case "user":
      return (
        <div className="ml-auto grid max-w-[85%] justify-items-end gap-1">
          <div className="whitespace-pre-wrap rounded-lg bg-stone-900 px-3 py-2 text-sm text-white dark:bg-stone-100 dark:text-stone-900">
            {row.text}
          </div>
          {row.messageId && <ForkButton sessionId={sessionId} messageId={row.messageId} />}
        </div>
      );
    case "text":
      return (
        <div data-testid="assistant-text">
          <Markdown text={row.text} />
        </div>
      );
    case "reasoning":
      return (
        <details className="text-xs text-stone-500">
          <summary className="cursor-pointer select-none">Thinking</summary>
          <div className="mt-1 whitespace-pre-wrap border-l-2 border-stone-300 pl-3 italic">{row.text}</div>
        </details>
      );
    case "tool":
      return <ToolCall row={row} waiting={waiting} />;
    case "notice":
      return (
        <p
          data-testid="notice"
          className={`text-xs ${row.tone === "error" ? "text-red-700 dark:text-red-300" : "text-stone-500"}`}
        >
          {row.text}
        </p>
      );
    case "git":
      return (
        <p
          data-testid="git-notice"
          data-action={row.action}
          className="flex min-w-0 items-baseline gap-2 text-xs text-stone-600 dark:text-stone-400"
        >
          <span className="shrink-0 rounded bg-emerald-100 px-1.5 py-0.5 text-[11px] font-medium text-emerald-800 dark:bg-emerald-900/50 dark:text-emerald-200">
            git
          </span>
          <span className="min-w-0 break-words">
            <GitText text={row.text} url={row.action === "pull_request" ? row.url : undefined} />
          </span>
        </p>
      );
    case "budget":
      return <BudgetLine row={row} />;
    default:
      // A row this version does not know how to show.
      return null;
  }
}

const BUDGET_NAME: Record<Extract<Row, { kind: "budget" }>["budget"], string> = {
  maxCostUsd: "Task cost budget",
  maxTokens: "Task token budget",
  projectDailyUsd: "Project daily budget",
  tokenDailyUsd: "API token daily budget",
};

const amount = (n: number, unit: "usd" | "tokens") =>
  unit === "usd"
    ? `$${n < 0.01 && n > 0 ? n.toFixed(4) : n.toFixed(2)}`
    : `${new Intl.NumberFormat("en-US").format(Math.round(n))} tokens`;

/**
 * A budget in warn mode was crossed. The call went through, so this is a warning, not an error; it
 * names the budget (its label and its config name) and how far past it the spend is.
 */
function BudgetLine({ row }: { row: Extract<Row, { kind: "budget" }> }) {
  return (
    <p
      role="status"
      data-testid="budget-warning"
      data-budget={row.budget}
      className="flex min-w-0 flex-wrap items-baseline gap-x-2 gap-y-1 rounded-md border border-amber-300 bg-amber-50 px-3 py-2 text-xs text-amber-900 dark:border-amber-700 dark:bg-amber-950/40 dark:text-amber-100"
    >
      <span className="shrink-0 rounded bg-amber-200 px-1.5 py-0.5 text-[11px] font-medium text-amber-900 dark:bg-amber-800 dark:text-amber-100">
        budget
      </span>
      <span className="font-medium">
        {BUDGET_NAME[row.budget] ?? row.budget} <code className="font-mono">{row.budget}</code> crossed:{" "}
        {amount(row.spent, row.unit)} of {amount(row.limit, row.unit)}
      </span>
      {row.text && <span className="min-w-0 break-words">{row.text}</span>}
    </p>
  );
}

/** A git event's summary; a pull request's address in it is a link (or the summary links to it). */
function GitText({ text, url }: { text: string; url: string | undefined }) {
  if (!url || !/^https?:\/\//.test(url)) return <>{text}</>;
  const link = (label: string) => (
    <a href={url} target="_blank" rel="noreferrer" className="underline underline-offset-2">
      {label}
    </a>
  );
  const i = text.indexOf(url);
  if (i < 0) return link(text);
  return (
    <>
      {text.slice(0, i)}
      {link(url)}
      {text.slice(i + url.length)}
    </>
  );
}

/** What the agent is asking to do, as plainly as its metadata allows: the diff, or the command. */
function PermissionTarget({ p }: { p: PendingPermission }) {
  const diff = typeof p.metadata.diff === "string" ? p.metadata.diff : undefined;
  const command = typeof p.metadata.command === "string" ? p.metadata.command : undefined;
  const target = p.patterns.join(", ");
  return (
    <div className="mt-2 grid gap-2">
      {target && <p className="break-all font-mono text-xs text-amber-900 dark:text-amber-200">{target}</p>}
      {command && <pre className="hljs-block whitespace-pre-wrap break-all">$ {command}</pre>}
      {diff && <InlineDiff lines={linesOfPatch(diff)} label={`Proposed change to ${target}`} />}
    </div>
  );
}

/**
 * A permission request. It takes focus when it appears (unless the person is typing), so Tab
 * reaches Allow once, Always allow and Reject in that order and Enter or Space answers; the card
 * itself takes the focus, not a button, so a stray Enter never answers for anyone.
 */
function PermissionCard({ sessionId, p }: { sessionId: string; p: PendingPermission }) {
  const [rejecting, setRejecting] = useState(false);
  const [message, setMessage] = useState("");
  const card = useRef<HTMLDivElement>(null);
  const rejectForm = useRef<HTMLFormElement>(null);
  // The form opens at the bottom of the page, where the pinned composer would cover it: bring all
  // of it (message and button) into view. The composer sets the root's scroll-padding to its height.
  useEffect(() => {
    if (rejecting) rejectForm.current?.scrollIntoView({ block: "nearest" });
  }, [rejecting]);
  const reply = useMutation({
    mutationFn: (body: { reply: "once" | "always" | "reject"; message?: string }) =>
      api.sessions.reply(sessionId, p.requestId, body),
  });
  useEffect(() => {
    const active = document.activeElement;
    const typing = active instanceof HTMLTextAreaElement || active instanceof HTMLInputElement;
    if (!typing) card.current?.focus({ preventScroll: false });
  }, []);
  return (
    <div
      ref={card}
      tabIndex={-1}
      role="alertdialog"
      aria-label="Permission request"
      aria-describedby={`perm-${p.requestId}`}
      onKeyDown={(e) => {
        if (e.key === "Escape" && rejecting) setRejecting(false);
      }}
      className="rounded-lg border-2 border-amber-400 bg-amber-50 p-4 outline-none focus-visible:ring-4 focus-visible:ring-amber-300 dark:border-amber-600 dark:bg-amber-950/40"
    >
      <p id={`perm-${p.requestId}`} className="text-sm font-semibold text-amber-950 dark:text-amber-100">
        The agent asks permission to {p.permission}
      </p>
      <PermissionTarget p={p} />
      <div className="mt-3 flex flex-wrap gap-2">
        <Button tone="primary" disabled={reply.isPending} onClick={() => reply.mutate({ reply: "once" })}>
          Allow once
        </Button>
        <Button disabled={reply.isPending} onClick={() => reply.mutate({ reply: "always" })}>
          Always allow
        </Button>
        <Button
          tone="danger"
          disabled={reply.isPending}
          aria-expanded={rejecting}
          onClick={() => setRejecting((r) => !r)}
        >
          Reject…
        </Button>
      </div>
      {rejecting && (
        <form
          ref={rejectForm}
          className="mt-3 grid gap-2"
          onSubmit={(e) => {
            e.preventDefault();
            reply.mutate({ reply: "reject", ...(message.trim() ? { message: message.trim() } : {}) });
          }}
        >
          <textarea
            rows={2}
            // Opening the reject form is asking to write the message.
            // biome-ignore lint/a11y/noAutofocus: focus follows the person's own action
            autoFocus
            aria-label="Message to the agent"
            placeholder="Tell the agent what to do instead (optional)"
            value={message}
            onChange={(e) => setMessage(e.target.value)}
            onKeyDown={(e) => {
              if (e.key === "Enter" && (e.metaKey || e.ctrlKey)) {
                e.preventDefault();
                e.currentTarget.form?.requestSubmit();
              }
            }}
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

const TODO_MARK: Record<string, string> = { completed: "✓", in_progress: "▸", cancelled: "✕" };

function Todos({ todos }: { todos: Todo[] }) {
  if (todos.length === 0) return null;
  const done = todos.filter((t) => t.status === "completed").length;
  return (
    <details
      open
      className="rounded-lg border border-stone-200 bg-white p-3 text-sm dark:border-stone-800 dark:bg-stone-900"
    >
      <summary className="cursor-pointer select-none font-medium">
        Plan · {done}/{todos.length} done
      </summary>
      <ul aria-label="Agent's todo list" className="mt-2 grid gap-1">
        {todos.map((t, i) => (
          <li
            // biome-ignore lint/suspicious/noArrayIndexKey: the agent's list has no ids
            key={i}
            className={`flex gap-2 ${t.status === "completed" || t.status === "cancelled" ? "text-stone-400 line-through" : ""}`}
          >
            <span aria-hidden className="w-3 shrink-0 text-center font-mono">
              {TODO_MARK[t.status] ?? "○"}
            </span>
            <span className={t.status === "in_progress" ? "font-medium" : ""}>{t.content}</span>
          </li>
        ))}
      </ul>
    </details>
  );
}

/** Within this many pixels of the bottom counts as "at the bottom": the view then follows new output. */
const FOLLOW_SLACK = 120;
const atBottom = () =>
  window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - FOLLOW_SLACK;

/**
 * The conversation. Rows are virtualised against the window's scroll (only those near the viewport
 * are in the DOM), so a session of 10,000 events scrolls as lightly as one of ten. While the reader
 * is at the bottom the view follows new output; scrolled up, it stays put. `failure` is the error
 * the composer shows under it (a failed start, an interrupted turn): its line is not repeated here.
 */
export function Conversation({
  sessionId,
  transcript,
  failure,
}: {
  sessionId: string;
  transcript: Transcript;
  failure?: string;
}) {
  const list = useRef<HTMLDivElement>(null);
  const [margin, setMargin] = useState(0);
  const following = useRef(true);
  useEffect(() => {
    const onScroll = () => {
      following.current = atBottom();
    };
    window.addEventListener("scroll", onScroll, { passive: true });
    return () => window.removeEventListener("scroll", onScroll);
  }, []);
  const rows = useMemo(
    () =>
      failure === undefined
        ? transcript.rows
        : transcript.rows.filter((r) => !(r.kind === "notice" && r.error === failure)),
    [transcript.rows, failure],
  );
  const empty = rows.length === 0;
  const hasTodos = transcript.todos.length > 0;
  // What stands above the list (the waiting line, the plan on a phone) moves it: measure again.
  // biome-ignore lint/correctness/useExhaustiveDependencies: re-measure when what is above it changes
  useLayoutEffect(() => {
    setMargin(list.current ? list.current.getBoundingClientRect().top + window.scrollY : 0);
  }, [empty, hasTodos]);
  const v = useWindowVirtualizer({
    count: rows.length,
    estimateSize: () => 48,
    overscan: 8,
    scrollMargin: margin,
    getItemKey: (i) => rows[i]!.key,
  });
  const markdownReady = useMarkdownReady();
  // biome-ignore lint/correctness/useExhaustiveDependencies: re-run whenever rows, requests or row heights change
  useEffect(() => {
    if (!following.current) return;
    if (rows.length) v.scrollToIndex(rows.length - 1, { align: "end" });
    requestAnimationFrame(() => window.scrollTo({ top: document.documentElement.scrollHeight }));
  }, [rows, transcript.permissions, markdownReady]);
  // The calls a pending request is about are waiting for a person, not running.
  const waitingCalls = useMemo(
    () => new Set(transcript.permissions.flatMap((p) => (p.callId ? [p.callId] : []))),
    [transcript.permissions],
  );
  const items = v.getVirtualItems();
  return (
    // The plan gets a column of its own on a wide screen only when there is one: otherwise the
    // conversation (and its diffs) take the whole width.
    <div
      className={`grid grid-cols-[minmax(0,1fr)] gap-3 ${hasTodos ? "lg:grid-cols-[minmax(0,1fr)_16rem] lg:items-start" : ""}`}
    >
      {hasTodos && (
        <div className="grid grid-cols-[minmax(0,1fr)] gap-3 lg:order-2 lg:sticky lg:top-4">
          <Todos todos={transcript.todos} />
        </div>
      )}
      <div className="grid grid-cols-[minmax(0,1fr)] gap-3">
        {empty && failure === undefined && <p className="text-sm text-stone-500">Waiting for the agent…</p>}
        <div
          ref={list}
          data-testid="transcript"
          data-rows={rows.length}
          style={{ height: v.getTotalSize(), position: "relative" }}
        >
          {items.map((it) => {
            const row = rows[it.index]!;
            return (
              <div
                key={it.key}
                data-index={it.index}
                ref={v.measureElement}
                className="absolute inset-x-0 pb-3"
                style={{ top: it.start - v.options.scrollMargin }}
              >
                <RowView row={row} sessionId={sessionId} waiting={waitingCalls.has(row.key)} />
              </div>
            );
          })}
        </div>
        {transcript.permissions.map((p) => (
          <PermissionCard key={p.requestId} sessionId={sessionId} p={p} />
        ))}
      </div>
    </div>
  );
}
