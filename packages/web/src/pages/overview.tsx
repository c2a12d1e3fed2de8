import type { Overview } from "@flotilla/client";
import { useQuery } from "@tanstack/react-query";
import { Link } from "@tanstack/react-router";
import type { ReactNode } from "react";
import { api } from "../api.ts";
import { Card, ErrorNote, formatCost, formatCount, timeAgo } from "../ui.tsx";

type Failure = Overview["failures"][number];
type HarnessItem = Overview["harnesses"]["items"][number];

export const formatMb = (bytes: number) => `${formatCount(bytes / (1024 * 1024))} MB`;
const plural = (n: number, word: string) => `${formatCount(n)} ${word}${n === 1 ? "" : "s"}`;
const basename = (repo: string) => repo.replace(/\/+$/, "").split("/").at(-1) ?? repo;

const label = "text-xs font-medium uppercase tracking-wide text-stone-500 dark:text-stone-400";

/** One headline number. The whole card links to where the number comes from. */
function Stat({
  id,
  title,
  value,
  note,
  tone = "plain",
  to,
  search,
}: {
  id: string;
  title: string;
  value: number;
  note?: ReactNode;
  tone?: "plain" | "live" | "warn" | "bad";
  to?: "/s" | "/t";
  search?: Record<string, string>;
}) {
  const accent =
    value === 0
      ? ""
      : tone === "live"
        ? "text-emerald-700 dark:text-emerald-300"
        : tone === "warn"
          ? "text-amber-700 dark:text-amber-300"
          : tone === "bad"
            ? "text-red-700 dark:text-red-300"
            : "";
  const box = "rounded-lg border border-stone-200 bg-white p-4 dark:border-stone-800 dark:bg-stone-900";
  const inner = (
    <>
      <span id={`${id}-title`} className={`block ${label}`}>
        {title}
      </span>
      <span
        data-testid={id}
        className={`mt-1 block text-3xl font-semibold tabular-nums tracking-tight ${accent}`}
      >
        {formatCount(value)}
      </span>
      {note && <span className="mt-1 block text-xs text-stone-500 dark:text-stone-400">{note}</span>}
    </>
  );
  if (!to) return <div className={box}>{inner}</div>;
  return (
    <Link
      to={to}
      search={search}
      aria-labelledby={`${id}-title`}
      className={`${box} transition hover:border-stone-300 hover:shadow-sm dark:hover:border-stone-700`}
    >
      {inner}
    </Link>
  );
}

function Row({ name, value, testId }: { name: string; value: string; testId?: string }) {
  return (
    <div className="flex items-baseline justify-between gap-3 py-1.5">
      <dt className="text-sm text-stone-600 dark:text-stone-400">{name}</dt>
      <dd data-testid={testId} className="font-mono text-sm tabular-nums">
        {value}
      </dd>
    </div>
  );
}

function UsageCard({ o }: { o: Overview }) {
  const t = o.today.tokens;
  return (
    <Card>
      <div className="flex items-baseline justify-between gap-3">
        <h2 className="font-semibold">Usage today</h2>
        <span className="flex items-baseline gap-3 text-xs text-stone-500">
          <span title={`Since ${o.since}`}>since 00:00 UTC</span>
          <Link to="/u" className="underline underline-offset-2 hover:text-stone-900 dark:hover:text-white">
            By project
          </Link>
        </span>
      </div>
      <div className="mt-3 flex items-baseline gap-2">
        <span data-testid="cost-today" className="text-3xl font-semibold tabular-nums tracking-tight">
          {formatCost(o.today.cost)}
        </span>
        <span className="text-sm text-stone-500">
          over {formatCount(o.today.messages)} {o.today.messages === 1 ? "reply" : "replies"}
        </span>
      </div>
      <dl className="mt-3 divide-y divide-stone-100 dark:divide-stone-800">
        <Row name="Input tokens" value={formatCount(t.input)} testId="tokens-input" />
        <Row name="Output tokens" value={formatCount(t.output)} testId="tokens-output" />
        <Row name="Reasoning tokens" value={formatCount(t.reasoning)} testId="tokens-reasoning" />
        <Row
          name="Cache read / write"
          value={`${formatCount(t.cacheRead)} / ${formatCount(t.cacheWrite)}`}
          testId="tokens-cache"
        />
      </dl>
    </Card>
  );
}

function HarnessRow({ h }: { h: HarnessItem }) {
  return (
    <li className="flex items-center gap-3 py-2 text-sm">
      <span
        className={`size-2 shrink-0 rounded-full ${h.state === "ready" ? "bg-emerald-500" : "bg-amber-500"}`}
        title={h.state}
      />
      <span className="min-w-0 flex-1">
        <span className="block truncate font-medium" title={h.repo ?? undefined}>
          {h.repo ? basename(h.repo) : "warm (unassigned)"}
        </span>
        <span className="block truncate font-mono text-xs text-stone-500">
          {h.state} · up {timeAgo(h.startedAt).replace(" ago", "")} · {h.id}
        </span>
      </span>
      <span className="shrink-0 text-right text-xs text-stone-500">
        <span className="block font-mono text-sm tabular-nums text-stone-800 dark:text-stone-200">
          {h.rssBytes === null ? "–" : formatMb(h.rssBytes)}
        </span>
        {h.activeSessions} active
      </span>
    </li>
  );
}

function HarnessCard({ o }: { o: Overview }) {
  const items = o.harnesses.items;
  return (
    <Card>
      <div className="flex items-baseline justify-between gap-3">
        <h2 className="font-semibold">Harnesses</h2>
        <span className="text-xs text-stone-500">
          <span data-testid="harness-count">{items.length}</span> live ·{" "}
          <span data-testid="harness-memory">{formatMb(o.harnesses.totalRssBytes)}</span>
        </span>
      </div>
      {items.length === 0 ? (
        <p className="mt-3 text-sm text-stone-500">
          No harness is running. One starts with the next session and stops when idle.
        </p>
      ) : (
        <ul aria-label="Harnesses" className="mt-2 divide-y divide-stone-100 dark:divide-stone-800">
          {items.map((h) => (
            <HarnessRow key={h.id} h={h} />
          ))}
        </ul>
      )}
    </Card>
  );
}

function Breakdown({ o }: { o: Overview }) {
  const s = o.sessions;
  const t = o.tasks;
  const cell = (name: string, n: number, testId: string) => (
    <div className="flex items-baseline justify-between gap-2 py-1">
      <dt className="text-sm text-stone-600 dark:text-stone-400">{name}</dt>
      <dd data-testid={testId} className="font-mono text-sm tabular-nums">
        {formatCount(n)}
      </dd>
    </div>
  );
  return (
    <Card>
      <div className="grid gap-6 sm:grid-cols-2">
        <div>
          <h2 className="font-semibold">Sessions now</h2>
          <dl className="mt-2">
            {cell("Idle", s.idle, "sessions-idle")}
            {cell("Provisioning", s.provisioning, "sessions-provisioning")}
            {cell("Interrupted", s.interrupted, "sessions-interrupted")}
            {cell("Failed to start", s.failed, "sessions-failed")}
          </dl>
        </div>
        <div>
          <h2 className="font-semibold">Tasks ended today</h2>
          <dl className="mt-2">
            {cell("Succeeded", t.succeeded, "tasks-succeeded")}
            {cell("Failed", t.failed, "tasks-failed")}
            {cell("Timed out", t.timed_out, "tasks-timed-out")}
            {cell("Dead", t.dead, "tasks-dead")}
            {cell("Cancelled", t.cancelled, "tasks-cancelled")}
          </dl>
        </div>
      </div>
    </Card>
  );
}

function FailureRow({ f }: { f: Failure }) {
  const body = (
    <>
      <span className="flex min-w-0 flex-1 flex-col gap-0.5">
        <span className="flex min-w-0 items-center gap-2">
          <span className="shrink-0 rounded bg-stone-100 px-1.5 py-0.5 text-[11px] font-medium uppercase tracking-wide text-stone-600 dark:bg-stone-800 dark:text-stone-300">
            {f.kind}
          </span>
          <span className="truncate font-medium">{f.title}</span>
        </span>
        {f.error && (
          <span className="line-clamp-2 break-words text-xs text-red-700 dark:text-red-300">
            {`${f.error.name}: `}
            {f.error.message}
          </span>
        )}
      </span>
      <span className="flex shrink-0 items-center gap-2 text-xs text-stone-500 sm:flex-col sm:items-end sm:gap-0.5">
        <span>{f.state.replace("_", " ")}</span>
        <time dateTime={f.at} title={new Date(f.at).toLocaleString()}>
          {timeAgo(f.at)}
        </time>
      </span>
    </>
  );
  const cls =
    "flex flex-col gap-1 px-4 py-3 hover:bg-stone-50 sm:flex-row sm:items-center sm:gap-4 dark:hover:bg-stone-800/50";
  return (
    <li data-testid="failure">
      {f.kind === "session" ? (
        <Link to="/s/$id" params={{ id: f.id }} className={cls}>
          {body}
        </Link>
      ) : (
        <Link to="/t/$id" params={{ id: f.id }} className={cls}>
          {body}
        </Link>
      )}
    </li>
  );
}

function Failures({ o }: { o: Overview }) {
  return (
    <section aria-labelledby="failures-heading">
      <h2 id="failures-heading" className="mb-2 font-semibold">
        Recent failures
      </h2>
      {o.failures.length === 0 ? (
        <Card>
          <p className="text-sm text-stone-500">
            Nothing has failed. Failed tasks and sessions show up here.
          </p>
        </Card>
      ) : (
        <ul
          aria-label="Recent failures"
          className="divide-y divide-stone-200 overflow-hidden rounded-lg border border-stone-200 bg-white dark:divide-stone-800 dark:border-stone-800 dark:bg-stone-900"
        >
          {o.failures.map((f) => (
            <FailureRow key={`${f.kind}-${f.id}`} f={f} />
          ))}
        </ul>
      )}
    </section>
  );
}

/** Checkouts and branches no live session owns: said only when there are some, with what tidies them. */
function Leftovers({ n }: { n: number | undefined }) {
  if (!n || n <= 0) return null;
  return (
    <p
      data-testid="leftovers"
      className="rounded-lg border border-stone-200 bg-white px-4 py-3 text-sm text-stone-700 dark:border-stone-800 dark:bg-stone-900 dark:text-stone-300"
    >
      <span className="font-medium tabular-nums">{formatCount(n)}</span> leftover checkout
      {n === 1 ? "" : "s"}/branch{n === 1 ? "" : "es"} —{" "}
      <code className="rounded bg-stone-100 px-1 py-0.5 font-mono text-xs dark:bg-stone-800">
        flotilla gc
      </code>{" "}
      removes {n === 1 ? "it" : "them"}
    </p>
  );
}

function Skeleton() {
  return (
    <div aria-hidden className="grid grid-cols-2 gap-3 lg:grid-cols-4">
      {[0, 1, 2, 3].map((i) => (
        <div key={i} className="h-24 animate-pulse rounded-lg bg-stone-200/60 dark:bg-stone-800/60" />
      ))}
    </div>
  );
}

export function OverviewPage() {
  // No polling: the app-wide activity hook invalidates ["overview"] whenever a session or task changes.
  const q = useQuery({ queryKey: ["overview"], queryFn: api.overview });
  const o = q.data;
  return (
    <div className="grid grid-cols-[minmax(0,1fr)] gap-6">
      <div className="flex flex-wrap items-baseline justify-between gap-2">
        <h1 className="text-lg font-semibold tracking-tight">Overview</h1>
        {o && (
          <span className="text-xs text-stone-500">
            Updated <time dateTime={o.at}>{new Date(o.at).toLocaleTimeString()}</time>
          </span>
        )}
      </div>
      <ErrorNote error={q.error} />
      {!o && q.isPending && <Skeleton />}
      {o && (
        <>
          <div className="grid grid-cols-2 gap-3 lg:grid-cols-4">
            <Stat
              id="stat-running"
              title="Running"
              value={o.sessions.running}
              tone="live"
              to="/s"
              search={{ status: "running" }}
              note={`${plural(o.tasks.running, "task")} running`}
            />
            <Stat
              id="stat-waiting"
              title="Needs approval"
              value={o.sessions.waiting_permission}
              tone="warn"
              to="/s"
              search={{ status: "waiting_permission" }}
              note="waiting for a permission reply"
            />
            <Stat
              id="stat-queued"
              title="Queued"
              value={o.queue.depth}
              to="/t"
              note={
                <>
                  <span data-testid="stat-ready">{formatCount(o.queue.ready)}</span> ready to claim
                </>
              }
            />
            <Stat
              id="stat-failed"
              title="Failed today"
              value={o.today.failedTasks + o.today.failedSessions}
              tone="bad"
              note={`${plural(o.today.failedTasks, "task")} · ${plural(o.today.failedSessions, "session")}`}
            />
          </div>
          <div className="grid grid-cols-[minmax(0,1fr)] gap-6 lg:grid-cols-2">
            <UsageCard o={o} />
            <HarnessCard o={o} />
          </div>
          <Breakdown o={o} />
          <Leftovers n={o.leftovers} />
          <Failures o={o} />
        </>
      )}
    </div>
  );
}
