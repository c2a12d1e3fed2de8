import type { UsageQuery, UsageRow } from "@flotilla/contracts";
import { useQuery } from "@tanstack/react-query";
import { Link, useNavigate, useRouterState } from "@tanstack/react-router";
import type { ReactNode } from "react";
import { api } from "../api.ts";
import { controlProps, Field, SectionTitle } from "../tasks/task-ui.tsx";
import { Card, ErrorNote, formatCost, formatCount, inputClass } from "../ui.tsx";

// The period is kept as a name (in the URL and the query key); its start is computed when asked, so
// a page left open keeps meaning "the last 7 days" rather than the 7 days before it was opened.
const PERIODS = [
  ["1d", "Last 24 hours", 1],
  ["7d", "Last 7 days", 7],
  ["30d", "Last 30 days", 30],
  ["90d", "Last 90 days", 90],
] as const;
type Period = (typeof PERIODS)[number][0];
const DEFAULT_PERIOD: Period = "30d";
const isPeriod = (v: unknown): v is Period => PERIODS.some(([p]) => p === v);
const sinceOf = (p: Period) =>
  new Date(Date.now() - PERIODS.find(([x]) => x === p)![2] * 86_400_000).toISOString();

/**
 * The gateway's calls are not on the activity feed one by one: the feed's session notices make the
 * usage stale (a turn's end follows its calls), and a slow poll catches what a running turn spends.
 */
const POLL_MS = 10_000;

function useUsage(q: Omit<UsageQuery, "format" | "since">, period: Period, enabled = true) {
  return useQuery({
    queryKey: ["usage", period, q],
    queryFn: () => api.usage({ ...q, since: sinceOf(period) }),
    refetchInterval: POLL_MS,
    enabled,
  });
}

/** The CSV of what the table shows, fetched by the browser itself (the cookie authenticates a GET). */
function csvHref(q: Record<string, string | undefined>, period: Period): string {
  const p = new URLSearchParams({ since: sinceOf(period), format: "csv" });
  for (const [k, v] of Object.entries(q)) if (v) p.set(k, v);
  return `/usage?${p}`;
}

function useFilters() {
  const search = useRouterState({ select: (s) => s.location.search as Record<string, unknown> });
  const navigate = useNavigate();
  const period: Period = isPeriod(search.period) ? search.period : DEFAULT_PERIOD;
  const project = typeof search.project === "string" && search.project ? search.project : undefined;
  const set = (next: { period?: Period; project?: string | undefined }) => {
    const merged = { period, project, ...next };
    const out: Record<string, string> = {};
    if (merged.period !== DEFAULT_PERIOD) out.period = merged.period;
    if (merged.project) out.project = merged.project;
    void navigate({ to: "/u", search: out, replace: true });
  };
  return { period, project, set };
}

const num = "px-3 py-2 text-right font-mono tabular-nums";
const head = "px-3 py-2 text-xs font-medium uppercase tracking-wide text-stone-500 dark:text-stone-400";

/** The numbers every usage row has, as cells in NUMBER_HEADS order (each with a test id naming its column). */
function Numbers({ r }: { r: UsageRow }) {
  return (
    <>
      <td data-testid="cost" data-usd={r.costUsd} className={`${num} font-medium`}>
        {formatCost(r.costUsd)}
      </td>
      <td data-testid="calls" className={num}>
        {formatCount(r.calls)}
      </td>
      <td
        data-testid="refused"
        className={`${num} ${r.refused ? "font-medium text-red-700 dark:text-red-300" : ""}`}
      >
        {formatCount(r.refused)}
      </td>
      <td data-testid="input" className={num}>
        {formatCount(r.inputTokens)}
      </td>
      <td data-testid="output" className={num}>
        {formatCount(r.outputTokens)}
      </td>
      <td data-testid="cached" className={num}>
        {formatCount(r.cachedTokens)}
      </td>
    </>
  );
}

// Cost first: on a phone the table scrolls sideways, and what was spent is what is looked for.
const NUMBER_HEADS = ["Cost", "Calls", "Refused", "Input", "Output", "Cached"];

/** A table that scrolls sideways on a phone rather than squeezing its numbers. */
function UsageTable({ label, heads, children }: { label: string; heads: string[]; children: ReactNode }) {
  return (
    <div className="overflow-x-auto rounded-lg border border-stone-200 bg-white dark:border-stone-800 dark:bg-stone-900">
      <table aria-label={label} className="w-full min-w-[40rem] border-collapse text-sm">
        <thead className="border-b border-stone-200 dark:border-stone-800">
          <tr>
            {heads.map((h) => (
              <th key={h} scope="col" className={`${head} text-left`}>
                {h}
              </th>
            ))}
            {NUMBER_HEADS.map((h) => (
              <th key={h} scope="col" className={`${head} text-right`}>
                {h}
              </th>
            ))}
          </tr>
        </thead>
        <tbody className="divide-y divide-stone-100 dark:divide-stone-800">{children}</tbody>
      </table>
    </div>
  );
}

function TotalRow({ total, span }: { total: UsageRow; span: number }) {
  return (
    <tr data-testid="usage-total" className="bg-stone-50 font-medium dark:bg-stone-800/40">
      <th scope="row" colSpan={span} className="px-3 py-2 text-left">
        Total
      </th>
      <Numbers r={total} />
    </tr>
  );
}

const basename = (repo: string) => repo.replace(/\/+$/, "").split("/").at(-1) ?? repo;

function Projects({
  period,
  selected,
  onSelect,
}: {
  period: Period;
  selected: string | undefined;
  onSelect: (project: string) => void;
}) {
  const q = useUsage({ by: "project" }, period);
  const r = q.data;
  return (
    <section aria-labelledby="usage-projects-heading">
      <SectionTitle
        aside={
          <a
            href={csvHref({ by: "project" }, period)}
            download="usage-by-project.csv"
            className="whitespace-nowrap text-sm text-stone-500 hover:text-stone-900 dark:hover:text-white"
          >
            Download CSV
          </a>
        }
      >
        <span id="usage-projects-heading">Spend by project</span>
      </SectionTitle>
      <ErrorNote error={q.error} />
      {q.isPending && <p className="text-sm text-stone-500">Loading usage…</p>}
      {r && r.items.length === 0 && (
        <Card>
          <p className="text-sm text-stone-500">
            No model calls in this period. Calls through the model gateway show up here, by project.
          </p>
        </Card>
      )}
      {r && r.items.length > 0 && (
        <UsageTable label="Spend by project" heads={["Project"]}>
          {r.items.map((x) => {
            const id = x.project ?? "";
            const on = id === selected;
            return (
              <tr
                key={id}
                data-testid="usage-project"
                data-project={id}
                aria-selected={on}
                className={
                  on ? "bg-stone-100 dark:bg-stone-800" : "hover:bg-stone-50 dark:hover:bg-stone-800/50"
                }
              >
                <th scope="row" className="max-w-[20rem] px-3 py-2 text-left font-normal">
                  <button
                    type="button"
                    onClick={() => onSelect(id)}
                    aria-pressed={on}
                    title={x.projectRepo ?? id}
                    className="grid min-w-0 text-left"
                  >
                    <span className="truncate font-medium underline-offset-2 hover:underline">
                      {x.projectRepo ? basename(x.projectRepo) : id}
                    </span>
                    <span className="truncate font-mono text-xs text-stone-500">{id}</span>
                  </button>
                </th>
                <Numbers r={x} />
              </tr>
            );
          })}
          <TotalRow total={r.total} span={1} />
        </UsageTable>
      )}
    </section>
  );
}

function ProjectDetail({ project, period, repo }: { project: string; period: Period; repo?: string }) {
  const q = useUsage({ by: "day,model", project }, period);
  const r = q.data;
  const name = repo ? basename(repo) : project;
  return (
    <section aria-labelledby="usage-detail-heading">
      <SectionTitle
        aside={
          <a
            data-testid="usage-csv"
            href={csvHref({ by: "day,model", project }, period)}
            download={`usage-${project}.csv`}
            className="whitespace-nowrap text-sm text-stone-500 hover:text-stone-900 dark:hover:text-white"
          >
            Download CSV
          </a>
        }
      >
        <span id="usage-detail-heading">
          {name} <span className="font-normal text-stone-500">by day and model</span>
        </span>
      </SectionTitle>
      <ErrorNote error={q.error} />
      {q.isPending && <p className="text-sm text-stone-500">Loading usage…</p>}
      {r && r.items.length === 0 && (
        <Card>
          <p className="text-sm text-stone-500">This project made no model calls in this period.</p>
        </Card>
      )}
      {r && r.items.length > 0 && (
        <UsageTable label={`Usage of ${name} by day and model`} heads={["Day", "Model"]}>
          {r.items.map((x) => (
            <tr
              key={`${x.day}-${x.model}`}
              data-testid="usage-day-model"
              data-day={x.day}
              data-model={x.model}
            >
              <td className="whitespace-nowrap px-3 py-2 font-mono tabular-nums">{x.day}</td>
              <td className="px-3 py-2 font-mono text-xs">{x.model}</td>
              <Numbers r={x} />
            </tr>
          ))}
          <TotalRow total={r.total} span={2} />
        </UsageTable>
      )}
    </section>
  );
}

export function UsagePage() {
  const { period, project, set } = useFilters();
  // The same query as the project table's (one request): it names the chosen project's repository.
  const projects = useUsage({ by: "project" }, period);
  const repo = projects.data?.items.find((x) => x.project === project)?.projectRepo;
  return (
    <div className="grid grid-cols-[minmax(0,1fr)] gap-6">
      <div className="flex flex-wrap items-end justify-between gap-3">
        <div>
          <h1 className="text-lg font-semibold tracking-tight">Usage</h1>
          <p className="mt-0.5 text-sm text-stone-500 dark:text-stone-400">
            What model calls through the gateway used and cost. Task budgets show on each task's session;{" "}
            <Link to="/" className="underline underline-offset-2">
              today's total
            </Link>{" "}
            is on the overview.
          </p>
        </div>
        <Field id="usage-period" label="Period" className="w-full sm:w-48">
          <select
            {...controlProps("usage-period")}
            value={period}
            onChange={(e) => set({ period: e.target.value as Period })}
            className={`${inputClass} py-1.5`}
          >
            {PERIODS.map(([p, label]) => (
              <option key={p} value={p}>
                {label}
              </option>
            ))}
          </select>
        </Field>
      </div>
      <Projects period={period} selected={project} onSelect={(p) => set({ project: p })} />
      {project ? (
        <ProjectDetail key={project} project={project} period={period} repo={repo} />
      ) : (
        projects.data &&
        projects.data.items.length > 0 && (
          <p className="text-sm text-stone-500">Choose a project to see its spend by day and model.</p>
        )
      )}
    </div>
  );
}
