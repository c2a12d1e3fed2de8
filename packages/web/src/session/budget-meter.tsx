import type { Task } from "@flotilla/contracts";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { Link } from "@tanstack/react-router";
import { useEffect } from "react";
import { api } from "../api.ts";
import { formatCost, formatCount } from "../ui.tsx";

/**
 * What the session spent through the model gateway and, when it works for a task with a budget,
 * how much of that budget the task has used over all its attempts. The gateway's own record
 * (`GET /usage`) is the source: it is what budgets are enforced against. `spendSeq` is the stream's
 * latest usage or budget.warning event: each one means the numbers moved, so they are read again.
 */
export function BudgetMeter({
  sessionId,
  since,
  spendSeq,
}: {
  sessionId: string;
  since: string | undefined;
  spendSeq: number;
}) {
  const qc = useQueryClient();
  // The gateway records each call's task, so the session's own usage, grouped by task, names it.
  const mine = useQuery({
    queryKey: ["usage", "session", sessionId],
    queryFn: () => api.usage({ by: "task", session: sessionId, ...(since ? { since } : {}) }),
    enabled: since !== undefined,
  });
  const taskId = mine.data?.items.find((r) => r.task)?.task ?? undefined;
  const task = useQuery({
    queryKey: ["task", taskId],
    queryFn: () => api.tasks.get(taskId!),
    enabled: taskId !== undefined,
  });
  const t = task.data;
  const budgeted = !!t && (t.maxCostUsd !== null || t.maxTokens !== null);
  // A budget covers every attempt, so the task's spend is over all its sessions since it was made.
  const spent = useQuery({
    queryKey: ["usage", "task", taskId],
    queryFn: () => api.usage({ by: "task", task: taskId!, since: t!.createdAt }),
    enabled: budgeted,
  });
  useEffect(() => {
    if (spendSeq > 0) void qc.invalidateQueries({ queryKey: ["usage"] });
  }, [spendSeq, qc]);

  if (!mine.data) return null;
  const own = mine.data.total;
  const total = spent.data?.total;
  return (
    <div
      data-testid="spend"
      className="flex flex-col gap-2 rounded-lg border border-stone-200 bg-white px-4 py-2.5 text-sm sm:flex-row sm:flex-wrap sm:items-center sm:gap-x-6 dark:border-stone-800 dark:bg-stone-900"
    >
      <span className="flex items-baseline gap-2">
        <span className="text-xs font-medium uppercase tracking-wide text-stone-500 dark:text-stone-400">
          Spent
        </span>
        <span
          data-testid="session-spend"
          data-usd={own.costUsd}
          className="font-mono font-medium tabular-nums"
        >
          {formatCost(own.costUsd)}
        </span>
        <span className="text-xs text-stone-500">
          {formatCount(own.inputTokens + own.outputTokens)} tokens · {formatCount(own.calls)}{" "}
          {own.calls === 1 ? "call" : "calls"}
          {own.refused > 0 && (
            <span className="text-red-700 dark:text-red-300"> · {formatCount(own.refused)} refused</span>
          )}
        </span>
      </span>
      {t && budgeted && total && (
        <>
          {t.maxCostUsd !== null && (
            <Gauge unit="usd" spent={total.costUsd} limit={t.maxCostUsd} mode={t.budgetMode} />
          )}
          {t.maxTokens !== null && (
            <Gauge
              unit="tokens"
              spent={total.inputTokens + total.outputTokens}
              limit={t.maxTokens}
              mode={t.budgetMode}
            />
          )}
          <Link
            to="/t/$id"
            params={{ id: t.id }}
            title="The task whose budget this is (over all its attempts)"
            className="font-mono text-xs text-stone-500 underline-offset-2 hover:underline"
          >
            {t.id}
          </Link>
        </>
      )}
      {t && !budgeted && (
        <span className="text-xs text-stone-500">
          Task{" "}
          <Link to="/t/$id" params={{ id: t.id }} className="font-mono underline-offset-2 hover:underline">
            {t.id}
          </Link>{" "}
          has no budget.
        </span>
      )}
    </div>
  );
}

const show = (n: number, unit: "usd" | "tokens") => (unit === "usd" ? formatCost(n) : formatCount(n));

/** Spent against one budget, as a meter, with what is left and the mode. */
function Gauge({
  unit,
  spent,
  limit,
  mode,
}: {
  unit: "usd" | "tokens";
  spent: number;
  limit: number;
  mode: Task["budgetMode"];
}) {
  const ratio = limit > 0 ? spent / limit : 1;
  const left = Math.max(0, limit - spent);
  const label = unit === "usd" ? "Cost budget" : "Token budget";
  return (
    <span className="flex min-w-0 flex-1 flex-wrap items-center gap-x-3 gap-y-1 sm:min-w-[18rem]">
      <span className="text-xs font-medium uppercase tracking-wide text-stone-500 dark:text-stone-400">
        {label}
      </span>
      {/* The browser's own meter: green, amber past 80 %, red once the budget is reached. */}
      <meter
        aria-label={`Task ${label.toLowerCase()} used`}
        aria-valuetext={`${show(spent, unit)} of ${show(limit, unit)}`}
        min={0}
        max={limit}
        low={limit * 0.8}
        high={limit}
        optimum={0}
        value={Math.min(spent, limit)}
        data-testid={`budget-${unit}`}
        data-spent={spent}
        data-limit={limit}
        className="h-3 w-28 shrink-0"
      />
      <span className="font-mono text-xs tabular-nums">
        <span data-testid={`budget-${unit}-spent`}>{show(spent, unit)}</span> of{" "}
        <span data-testid={`budget-${unit}-limit`}>{show(limit, unit)}</span>
        {ratio < 1 ? (
          <span className="text-stone-500"> · {show(left, unit)} left</span>
        ) : (
          <span className="text-red-700 dark:text-red-300"> · reached</span>
        )}
      </span>
      <span
        data-testid="budget-mode"
        title={
          mode === "hard"
            ? "A call that would go past the budget is refused"
            : "Calls past the budget go through, with a warning"
        }
        className={`rounded-full px-2 py-0.5 text-[11px] font-medium ${mode === "hard" ? "bg-stone-900 text-white dark:bg-stone-100 dark:text-stone-900" : "bg-amber-100 text-amber-900 dark:bg-amber-900/50 dark:text-amber-200"}`}
      >
        {mode}
      </span>
    </span>
  );
}
