import type { DeliveryStatus, TaskState } from "@flotilla/contracts";
import type { ReactNode } from "react";

const STATE_STYLE: Record<TaskState, string> = {
  queued: "bg-sky-100 text-sky-800 dark:bg-sky-900/50 dark:text-sky-200",
  running: "bg-emerald-100 text-emerald-800 dark:bg-emerald-900/50 dark:text-emerald-200",
  succeeded: "bg-green-600 text-white dark:bg-green-700",
  failed: "bg-red-100 text-red-800 dark:bg-red-900/50 dark:text-red-200",
  cancelled: "bg-stone-200 text-stone-700 dark:bg-stone-800 dark:text-stone-300",
  timed_out: "bg-orange-100 text-orange-800 dark:bg-orange-900/50 dark:text-orange-200",
  dead: "bg-red-700 text-white dark:bg-red-800",
};

export const TASK_STATES = Object.keys(STATE_STYLE) as TaskState[];
export const isTaskState = (s: string | null | undefined): s is TaskState =>
  !!s && Object.hasOwn(STATE_STYLE, s);
export const taskStateLabel = (s: TaskState) => s.replace("_", " ");

/** A task's state as a pill; `running` pulses so a live task reads as live at a glance. */
export function TaskStateBadge({ state, testId }: { state: TaskState; testId?: string }) {
  return (
    <span
      data-testid={testId}
      className={`inline-flex shrink-0 items-center gap-1 rounded-full px-2 py-0.5 text-xs font-medium ${STATE_STYLE[state]}`}
    >
      {state === "running" && <span className="size-1.5 animate-pulse rounded-full bg-current" />}
      {taskStateLabel(state)}
    </span>
  );
}

const DELIVERY_STYLE: Record<DeliveryStatus, string> = {
  pending: "bg-amber-100 text-amber-900 dark:bg-amber-900/50 dark:text-amber-200",
  delivered: "bg-emerald-100 text-emerald-800 dark:bg-emerald-900/50 dark:text-emerald-200",
  failed: "bg-red-100 text-red-800 dark:bg-red-900/50 dark:text-red-200",
};

export function DeliveryStatusBadge({ status }: { status: DeliveryStatus }) {
  return (
    <span
      data-testid="delivery-status"
      className={`inline-flex shrink-0 items-center rounded-full px-2 py-0.5 text-xs font-medium ${DELIVERY_STYLE[status]}`}
    >
      {status}
    </span>
  );
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  const rest = Math.round(s % 60);
  if (m < 60) return rest ? `${m}m ${String(rest).padStart(2, "0")}s` : `${m} min`;
  return m % 60 ? `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m` : `${m / 60} h`;
}

export const fullTime = (iso: string) => new Date(iso).toLocaleString();

/** A time as "3m ago" with the exact time on hover, in a <time> element for assistive tech. */
export function When({ iso, children }: { iso: string; children?: ReactNode }) {
  return (
    <time dateTime={iso} title={fullTime(iso)}>
      {children ?? fullTime(iso)}
    </time>
  );
}

/** A term/definition grid that stacks on a phone and lines up on wider screens. */
export function Facts({ items }: { items: [string, ReactNode][] }) {
  return (
    <dl className="grid grid-cols-[max-content_minmax(0,1fr)] gap-x-4 gap-y-2 text-sm sm:gap-x-6">
      {items.map(([k, v]) => (
        <div key={k} className="contents">
          <dt className="text-stone-500">{k}</dt>
          <dd className="min-w-0 break-words">{v}</dd>
        </div>
      ))}
    </dl>
  );
}

export function SectionTitle({ children, aside }: { children: ReactNode; aside?: ReactNode }) {
  return (
    <div className="mb-2 flex items-center gap-3">
      <h2 className="font-semibold">{children}</h2>
      {aside && <div className="ml-auto flex items-center gap-2">{aside}</div>}
    </div>
  );
}

export const listClass =
  "divide-y divide-stone-200 overflow-hidden rounded-lg border border-stone-200 bg-white dark:divide-stone-800 dark:border-stone-800 dark:bg-stone-900";

/** The first line of a prompt, the way a task is named in lists and headings. */
export function promptTitle(prompt: string): string {
  const line = prompt.trim().split("\n")[0] ?? "";
  return line.length > 120 ? `${line.slice(0, 119)}…` : line;
}

/** The API names the offending input (`field`, a dotted path); its first segment is the form control. */
export function fieldErrorOf(error: unknown): { field: string; message: string } | undefined {
  const e = error as { field?: unknown; message?: unknown } | null;
  if (!e || typeof e.field !== "string" || typeof e.message !== "string") return undefined;
  const field = e.field.split(".")[0]!;
  // Validation messages lead with the path ("timeoutMs: Too big"); next to the field that is noise.
  const message = e.message.startsWith(`${e.field}: `) ? e.message.slice(e.field.length + 2) : e.message;
  return { field, message };
}

/**
 * A labelled control with its hint or error underneath. The control itself is rendered by the
 * caller with `controlProps(id, …)`, so the label, the error and aria-describedby always agree.
 */
export function Field({
  id,
  label,
  hint,
  error,
  className = "",
  children,
}: {
  id: string;
  label: ReactNode;
  hint?: ReactNode;
  error?: string;
  className?: string;
  children: ReactNode;
}) {
  return (
    <div className={`grid min-w-0 content-start gap-1 text-sm ${className}`}>
      <label htmlFor={id} className="font-medium">
        {label}
      </label>
      {children}
      {error ? (
        <p id={`${id}-error`} className="text-xs text-red-700 dark:text-red-300">
          {error}
        </p>
      ) : hint ? (
        <p id={`${id}-hint`} className="text-xs text-stone-500">
          {hint}
        </p>
      ) : null}
    </div>
  );
}

export function controlProps(id: string, error?: string, hint?: ReactNode) {
  return {
    id,
    "aria-invalid": error ? true : undefined,
    "aria-describedby": error ? `${id}-error` : hint ? `${id}-hint` : undefined,
  } as const;
}
