import type { Task, TaskState } from "@flotilla/contracts";
import { FINAL_TASK_STATES } from "@flotilla/contracts/light";
import { useInfiniteQuery, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Link, useParams } from "@tanstack/react-router";
import { useDeferredValue, useState } from "react";
import { api } from "../api.ts";
import { DeliveryList } from "../tasks/deliveries.tsx";
import { TaskForm } from "../tasks/task-form.tsx";
import { AttemptList, HistoryList, LabelChips, TaskOptions, TaskResultView } from "../tasks/task-parts.tsx";
import {
  controlProps,
  Field,
  listClass,
  promptTitle,
  SectionTitle,
  TASK_STATES,
  TaskStateBadge,
  taskStateLabel,
  When,
} from "../tasks/task-ui.tsx";
import { Button, Card, Dialog, ErrorNote, inputClass, LoadMore, timeAgo } from "../ui.tsx";

export { TaskStateBadge };

// What POST /tasks/{id}/retry accepts: a finished task that did not succeed.
const RETRIABLE: TaskState[] = ["failed", "cancelled", "timed_out", "dead"];
const LABEL_FILTER = /^[^=]+=.*$/;
const PAGE = 25;

function TaskRow({ t }: { t: Task }) {
  return (
    <li>
      <Link
        to="/t/$id"
        params={{ id: t.id }}
        className="flex flex-col gap-1.5 px-4 py-3 hover:bg-stone-50 sm:flex-row sm:items-center sm:gap-4 dark:hover:bg-stone-800/50"
      >
        <span className="min-w-0 flex-1">
          <span className="block truncate font-medium">{promptTitle(t.prompt)}</span>
          <span className="flex min-w-0 items-center gap-2 text-xs text-stone-500">
            <span className="truncate font-mono">{t.repo}</span>
            {Object.keys(t.labels).length > 0 && (
              <span className="hidden shrink-0 sm:inline">
                <LabelChips labels={t.labels} />
              </span>
            )}
          </span>
        </span>
        <span className="flex flex-wrap items-center gap-x-3 gap-y-1 text-xs text-stone-500">
          {t.priority !== 0 && (
            <span title="Priority">
              priority {t.priority > 0 ? "+" : ""}
              {t.priority}
            </span>
          )}
          <span title="Attempts made of the attempts allowed">
            {t.attempts}/{t.maxAttempts} attempts
          </span>
          <When iso={t.createdAt}>{timeAgo(t.createdAt)}</When>
          <TaskStateBadge state={t.state} testId="task-state" />
        </span>
      </Link>
    </li>
  );
}

export function TasksPage() {
  const [state, setState] = useState<TaskState | "">("");
  const [labelText, setLabelText] = useState("");
  const label = useDeferredValue(labelText.trim());
  const labelOk = label === "" || LABEL_FILTER.test(label);
  const filters = { ...(state ? { state } : {}), ...(label && labelOk ? { label } : {}) };
  // No polling: the app-wide activity hook invalidates ["tasks"] whenever the server reports a change.
  const list = useInfiniteQuery({
    queryKey: ["tasks", filters],
    queryFn: ({ pageParam }) => api.tasks.list({ ...filters, limit: PAGE, cursor: pageParam }),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last) => last.nextCursor ?? undefined,
  });
  const items = list.data?.pages.flatMap((p) => p.items) ?? [];
  const filtered = Object.keys(filters).length > 0;
  const labelError = labelOk ? undefined : "expected key=value";
  // Submitting is a dialog, so the list is what the page shows first.
  const [creating, setCreating] = useState(false);
  return (
    <div className="grid grid-cols-[minmax(0,1fr)] gap-6">
      <Dialog
        open={creating}
        onClose={() => setCreating(false)}
        title="New task"
        description="Queued work: the scheduler runs it in its own workspace, retries what can be retried, and keeps the result."
      >
        <TaskForm onDone={() => setCreating(false)} />
      </Dialog>
      <section aria-labelledby="tasks-heading">
        <div className="mb-3 grid grid-cols-2 items-start gap-3 sm:flex sm:flex-wrap sm:items-end">
          <h1 id="tasks-heading" className="self-center text-lg font-semibold sm:mr-auto">
            Tasks
          </h1>
          {/* Beside the heading on a phone; at the end of the filters' row on a wider screen. */}
          <Button
            tone="primary"
            onClick={() => setCreating(true)}
            aria-haspopup="dialog"
            className="justify-self-end sm:order-last"
          >
            New task
          </Button>
          <Field id="filter-state" label="State" className="sm:w-40">
            <select
              {...controlProps("filter-state")}
              value={state}
              onChange={(e) => setState(e.target.value as TaskState | "")}
              className={`${inputClass} py-1.5`}
            >
              <option value="">All states</option>
              {TASK_STATES.map((s) => (
                <option key={s} value={s}>
                  {taskStateLabel(s)}
                </option>
              ))}
            </select>
          </Field>
          <Field id="filter-label" label="Label" error={labelError} className="sm:w-48">
            <input
              {...controlProps("filter-label", labelError)}
              type="search"
              placeholder="key=value"
              value={labelText}
              onChange={(e) => setLabelText(e.target.value)}
              className={`${inputClass} py-1.5 font-mono`}
            />
          </Field>
        </div>
        <ErrorNote error={list.error} />
        {list.isPending && <p className="text-sm text-stone-500">Loading tasks…</p>}
        {list.data && items.length === 0 && (
          <p className="text-sm text-stone-500">
            {filtered ? "No task matches these filters." : "No tasks yet. Submit one with New task."}
          </p>
        )}
        {items.length > 0 && (
          <ul aria-label="Tasks" className={listClass}>
            {items.map((t) => (
              <TaskRow key={t.id} t={t} />
            ))}
          </ul>
        )}
        <LoadMore query={list} />
      </section>
    </div>
  );
}

export function TaskPage() {
  const { id } = useParams({ from: "/t/$id" });
  const qc = useQueryClient();
  // Live without polling: the activity hook invalidates ["task", id] (and so every key under it).
  const task = useQuery({ queryKey: ["task", id], queryFn: () => api.tasks.get(id) });
  const deliveries = useQuery({
    queryKey: ["task", id, "deliveries"],
    queryFn: () => api.webhooks.taskDeliveries(id, { limit: 50 }),
  });
  // Which task a cancel was asked for: the page may be reused for another task's id.
  const [cancelAskedFor, setCancelAskedFor] = useState<string>();
  // The answer is the state the request made: show it at once, and let lists catch up.
  const apply = (t: Task) => {
    qc.setQueryData(["task", id], t);
    void qc.invalidateQueries({ queryKey: ["tasks"] });
  };
  const cancel = useMutation({
    mutationFn: () => api.tasks.cancel(id),
    onSuccess: (t) => {
      apply(t);
      setCancelAskedFor(t.state === "running" ? id : undefined);
    },
  });
  const retry = useMutation({
    mutationFn: () => api.tasks.retry(id),
    onSuccess: (t) => {
      apply(t);
      setCancelAskedFor(undefined);
    },
  });

  if (task.error) return <ErrorNote error={task.error} />;
  if (!task.data) return <p className="text-sm text-stone-500">Loading task…</p>;
  const t = task.data;
  const final = FINAL_TASK_STATES.includes(t.state);
  const stopping = cancelAskedFor === id && t.state === "running";
  return (
    <div className="grid grid-cols-[minmax(0,1fr)] gap-5">
      <div className="flex flex-wrap items-start gap-3">
        <div className="min-w-0 flex-1 basis-64">
          <p className="text-xs text-stone-500">
            <Link to="/t" className="hover:underline">
              Tasks
            </Link>{" "}
            / <span className="font-mono">{t.id}</span>
          </p>
          <h1 className="mt-0.5 break-words text-lg font-semibold">{promptTitle(t.prompt)}</h1>
        </div>
        <div className="flex flex-wrap items-center gap-2">
          <TaskStateBadge state={t.state} testId="task-state" />
          {!final && (
            <Button tone="danger" onClick={() => cancel.mutate()} disabled={cancel.isPending || stopping}>
              {stopping ? "Cancelling…" : "Cancel"}
            </Button>
          )}
          {RETRIABLE.includes(t.state) && (
            <Button tone="primary" onClick={() => retry.mutate()} disabled={retry.isPending}>
              Retry
            </Button>
          )}
        </div>
      </div>
      {stopping && (
        <p role="status" className="text-sm text-stone-600 dark:text-stone-400">
          Cancel requested: the agent is being stopped.
        </p>
      )}
      <ErrorNote error={cancel.error ?? retry.error} />
      {t.error && (
        <div
          role="note"
          className="rounded-md border border-red-200 bg-red-50 px-3 py-2 text-sm text-red-900 dark:border-red-900 dark:bg-red-950/50 dark:text-red-200"
        >
          <span className="font-medium">{t.error.name}:</span> {t.error.message}
        </div>
      )}
      <div className="grid grid-cols-[minmax(0,1fr)] gap-5 lg:grid-cols-[minmax(0,3fr)_minmax(0,2fr)]">
        <div className="grid min-w-0 content-start gap-5">
          <Card>
            <SectionTitle>Prompt</SectionTitle>
            <p className="whitespace-pre-wrap break-words text-sm leading-relaxed">{t.prompt}</p>
          </Card>
          <TaskResultView task={t} />
          <section aria-label="Attempt history">
            <SectionTitle>Attempts</SectionTitle>
            <AttemptList attempts={t.attemptList ?? []} />
          </section>
          <section aria-label="Transition history">
            <SectionTitle>History</SectionTitle>
            <HistoryList history={t.history ?? []} />
          </section>
        </div>
        <div className="grid min-w-0 content-start gap-5">
          <TaskOptions task={t} />
        </div>
      </div>
      <section aria-label="Webhook deliveries">
        <SectionTitle
          aside={
            <Link to="/hooks" className="text-sm text-stone-500 hover:text-stone-900 dark:hover:text-white">
              Webhooks
            </Link>
          }
        >
          Webhook deliveries
        </SectionTitle>
        <ErrorNote error={deliveries.error} />
        {deliveries.data && deliveries.data.items.length === 0 && (
          <p className="text-sm text-stone-500">
            None: this task has no webhook URL and no subscription has matched its events.
          </p>
        )}
        {deliveries.data && deliveries.data.items.length > 0 && (
          <DeliveryList items={deliveries.data.items} showUrl />
        )}
      </section>
    </div>
  );
}
