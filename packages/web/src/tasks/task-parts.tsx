import type { Task } from "@flotilla/contracts";
import { Link } from "@tanstack/react-router";
import type { ReactNode } from "react";
import { Card, timeAgo } from "../ui.tsx";
import {
  Facts,
  formatDuration,
  isTaskState,
  SectionTitle,
  TaskStateBadge,
  taskStateLabel,
  When,
} from "./task-ui.tsx";

type Attempt = NonNullable<Task["attemptList"]>[number];
type Change = NonNullable<Task["history"]>[number];

export function LabelChips({ labels }: { labels: Record<string, string> }) {
  const entries = Object.entries(labels);
  if (entries.length === 0) return <span className="text-stone-400">none</span>;
  return (
    <span className="flex flex-wrap gap-1">
      {entries.map(([k, v]) => (
        <span
          key={k}
          className="rounded bg-stone-100 px-1.5 py-0.5 font-mono text-xs text-stone-700 dark:bg-stone-800 dark:text-stone-300"
        >
          {k}={v}
        </span>
      ))}
    </span>
  );
}
/** What was asked for: the options the task was submitted with. */
const usd = (n: number) => `$${n < 0.01 ? n.toFixed(4) : n.toFixed(2)}`;

/** A task's budgets and what happens past them (hard: refused; warn: a warning, and it goes on). */
function Budget({ task }: { task: Task }) {
  const limits = [
    ...(task.maxCostUsd !== null ? [usd(task.maxCostUsd)] : []),
    ...(task.maxTokens !== null ? [`${task.maxTokens.toLocaleString("en-US")} tokens`] : []),
  ];
  if (limits.length === 0) return <span className="text-stone-400">none</span>;
  return (
    <span data-testid="task-budget" className="flex flex-wrap items-center gap-2">
      <span className="font-mono text-xs">{limits.join(" · ")}</span>
      <span
        data-testid="task-budget-mode"
        className={`rounded-full px-2 py-0.5 text-[11px] font-medium ${task.budgetMode === "hard" ? "bg-stone-900 text-white dark:bg-stone-100 dark:text-stone-900" : "bg-amber-100 text-amber-900 dark:bg-amber-900/50 dark:text-amber-200"}`}
      >
        {task.budgetMode}
      </span>
      <span className="text-xs text-stone-500">
        {task.budgetMode === "hard" ? "calls past it are refused" : "calls past it go on, with a warning"}
      </span>
      {task.sessionId && (
        <Link
          to="/s/$id"
          params={{ id: task.sessionId }}
          className="text-xs text-stone-500 underline underline-offset-2"
        >
          spent so far
        </Link>
      )}
    </span>
  );
}

export function TaskOptions({ task }: { task: Task }) {
  const mono = (s: string) => <span className="break-all font-mono text-xs">{s}</span>;
  const dim = (s: string) => <span className="text-stone-400">{s}</span>;
  const items: [string, ReactNode][] = [
    ["Repository", mono(task.repo)],
    ["Base ref", mono(task.baseRef)],
    ["Model", mono(task.model)],
    ["Agent", task.agent ?? dim("default")],
    ["Priority", String(task.priority)],
    ["Timeout", formatDuration(task.timeoutMs)],
    ["Attempts", `${task.attempts} of ${task.maxAttempts}`],
    ["Verify", task.verify ? mono(task.verify) : dim("none")],
    ["Labels", <LabelChips key="labels" labels={task.labels} />],
    ["Webhook", task.webhook ? mono(task.webhook) : dim("none")],
    ["Budget", <Budget key="budget" task={task} />],
    [
      "On success",
      task.pr
        ? `push and open a ${task.pr.draft ? "draft " : ""}pull request${task.pr.base ? ` into ${task.pr.base}` : ""}`
        : task.commit
          ? "commit"
          : dim("leave the changes uncommitted"),
    ],
  ];
  if (task.idempotencyKey) items.push(["Idempotency key", mono(task.idempotencyKey)]);
  items.push(["Submitted", <When key="created" iso={task.createdAt} />]);
  if (task.state === "queued" && Date.parse(task.availableAt) > Date.now())
    items.push(["Not before", <When key="available" iso={task.availableAt} />]);
  if (task.finishedAt) items.push(["Finished", <When key="finished" iso={task.finishedAt} />]);
  items.push(["Project", mono(task.projectId)]);
  return (
    <Card>
      <SectionTitle>Options</SectionTitle>
      <Facts items={items} />
    </Card>
  );
}

/** Where a succeeded task's work landed: its commit, and its pull request. */
function landed(r: NonNullable<Task["result"]>): [string, ReactNode][] {
  const out: [string, ReactNode][] = [];
  if (r.commit)
    out.push([
      "Commit",
      <span key="commit" data-testid="task-commit" title={r.commit} className="font-mono text-xs">
        {r.commit.slice(0, 7)}
      </span>,
    ]);
  if (r.pullRequest)
    out.push([
      "Pull request",
      <a
        key="pr"
        data-testid="task-pr"
        href={r.pullRequest.url}
        target="_blank"
        rel="noreferrer"
        className="break-all font-medium underline underline-offset-2"
      >
        #{r.pullRequest.number}
      </a>,
    ]);
  return out;
}

export function TaskResultView({ task }: { task: Task }) {
  const r = task.result;
  if (!r) return null;
  const tokens = r.tokens.input + r.tokens.output + r.tokens.reasoning;
  return (
    <Card>
      <SectionTitle
        aside={
          task.sessionId && (
            <Link
              to="/s/$id/changes"
              params={{ id: task.sessionId }}
              className="text-sm text-stone-600 underline underline-offset-2 hover:text-stone-900 dark:text-stone-400 dark:hover:text-white"
            >
              View changes
            </Link>
          )
        }
      >
        Result
      </SectionTitle>
      {r.summary && (
        <p className="mb-3 whitespace-pre-wrap text-sm leading-relaxed" data-testid="task-summary">
          {r.summary}
        </p>
      )}
      <Facts
        items={[
          [
            "Changes",
            <span key="c">
              {r.files} file{r.files === 1 ? "" : "s"},{" "}
              <span className="text-emerald-700 dark:text-emerald-400">+{r.additions}</span>{" "}
              <span className="text-red-700 dark:text-red-400">−{r.deletions}</span>
            </span>,
          ],
          ["Took", formatDuration(r.durationMs)],
          [
            "Tokens",
            `${tokens.toLocaleString()} (${r.tokens.input.toLocaleString()} in, ${r.tokens.output.toLocaleString()} out)`,
          ],
          ["Cost", `$${r.cost.toFixed(4)}`],
          ...landed(r),
        ]}
      />
      {r.verify && (
        <div className="mt-3 grid gap-1">
          <p className="flex flex-wrap items-center gap-2 text-sm">
            <span className="text-stone-500">Verify</span>
            <code className="font-mono text-xs">{r.verify.command}</code>
            <span
              className={`rounded px-1.5 py-0.5 font-mono text-xs ${
                r.verify.exitCode === 0
                  ? "bg-emerald-100 text-emerald-800 dark:bg-emerald-900/50 dark:text-emerald-200"
                  : "bg-red-100 text-red-800 dark:bg-red-900/50 dark:text-red-200"
              }`}
            >
              exit {r.verify.exitCode ?? "?"}
            </span>
          </p>
          {r.verify.output && (
            <pre className="max-h-72 overflow-auto rounded-md bg-stone-100 p-2 font-mono text-xs dark:bg-stone-950">
              {r.verify.output}
            </pre>
          )}
        </div>
      )}
    </Card>
  );
}

function AttemptItem({ a }: { a: Attempt }) {
  const running = a.finishedAt === null;
  const took = a.finishedAt ? Date.parse(a.finishedAt) - Date.parse(a.startedAt) : null;
  return (
    <li aria-label={`Attempt ${a.n}`} data-testid="attempt" className="grid gap-1 px-4 py-3">
      <div className="flex flex-wrap items-center gap-x-3 gap-y-1">
        <span className="font-medium">Attempt {a.n}</span>
        {running ? (
          <TaskStateBadge state="running" />
        ) : isTaskState(a.outcome) ? (
          <TaskStateBadge state={a.outcome} />
        ) : (
          <span className="rounded-full bg-stone-200 px-2 py-0.5 text-xs dark:bg-stone-800">{a.outcome}</span>
        )}
        {a.sessionId ? (
          <Link
            to="/s/$id"
            params={{ id: a.sessionId }}
            className="ml-auto text-sm font-medium text-stone-700 underline underline-offset-2 hover:text-stone-900 dark:text-stone-300 dark:hover:text-white"
          >
            Open session
          </Link>
        ) : (
          <span className="ml-auto text-xs text-stone-400">
            {running ? "starting a session…" : "no session"}
          </span>
        )}
      </div>
      <p className="flex flex-wrap gap-x-3 text-xs text-stone-500">
        <span>
          started <When iso={a.startedAt}>{timeAgo(a.startedAt)}</When>
        </span>
        {took !== null && <span>took {formatDuration(took)}</span>}
        <span className="font-mono">{a.replica}</span>
      </p>
      {a.error && (
        <p className="break-words text-xs text-red-700 dark:text-red-300">
          <span className="font-medium">{a.error.name}:</span> {a.error.message}
        </p>
      )}
    </li>
  );
}

export function AttemptList({ attempts }: { attempts: Attempt[] }) {
  if (attempts.length === 0)
    return <p className="text-sm text-stone-500">No attempt yet: the task is waiting its turn.</p>;
  return (
    <ol
      aria-label="Attempts"
      className="divide-y divide-stone-200 rounded-lg border border-stone-200 bg-white dark:divide-stone-800 dark:border-stone-800 dark:bg-stone-900"
    >
      {[...attempts].reverse().map((a) => (
        <AttemptItem key={a.n} a={a} />
      ))}
    </ol>
  );
}

export function HistoryList({ history }: { history: Change[] }) {
  return (
    <ol
      aria-label="Transitions"
      className="relative grid gap-3 border-l border-stone-200 pl-4 dark:border-stone-800"
    >
      {history.map((h, i) => (
        // biome-ignore lint/suspicious/noArrayIndexKey: the history is append-only, so an index is stable
        <li key={i} className="relative grid gap-0.5 text-sm">
          <span className="absolute top-1.5 -left-[20.5px] size-2 rounded-full bg-stone-300 dark:bg-stone-600" />
          <span className="flex flex-wrap items-center gap-2">
            {h.from && <span className="text-xs text-stone-500">{taskStateLabel(h.from)} →</span>}
            <TaskStateBadge state={h.to} />
            <When iso={h.at}>
              <span className="text-xs text-stone-500">{new Date(h.at).toLocaleTimeString()}</span>
            </When>
          </span>
          {h.reason && (
            <span className="break-words text-xs text-stone-600 dark:text-stone-400">{h.reason}</span>
          )}
        </li>
      ))}
    </ol>
  );
}
