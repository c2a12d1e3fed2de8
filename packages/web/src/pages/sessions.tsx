import type { Session } from "@flotilla/client";
import { keepPreviousData, useInfiniteQuery, useMutation, useQuery } from "@tanstack/react-query";
import { Link, useNavigate, useRouterState } from "@tanstack/react-router";
import { type FormEvent, useEffect, useRef, useState } from "react";
import { api } from "../api.ts";
import {
  Button,
  Card,
  Dialog,
  ErrorNote,
  inputClass,
  LoadMore,
  ModelOptions,
  StatusBadge,
  timeAgo,
} from "../ui.tsx";

const LAST_REPO = "flotilla.lastRepo";

function NewSessionForm({ onDone }: { onDone: () => void }) {
  const navigate = useNavigate();
  const models = useQuery({ queryKey: ["models"], queryFn: api.models });
  const [repo, setRepo] = useState(() => localStorage.getItem(LAST_REPO) ?? "");
  const [prompt, setPrompt] = useState("");
  const [model, setModel] = useState("");
  const create = useMutation({
    mutationFn: () => api.sessions.create({ repo: repo.trim(), prompt, ...(model ? { model } : {}) }),
    onSuccess: (s) => {
      localStorage.setItem(LAST_REPO, repo.trim());
      onDone();
      void navigate({ to: "/s/$id", params: { id: s.id } });
    },
  });
  const submit = (ev: FormEvent) => {
    ev.preventDefault();
    create.mutate();
  };
  const chosen = model || models.data?.default || "";
  return (
    <form onSubmit={submit} className="mt-3 grid gap-3" aria-label="New session">
      <label className="grid gap-1 text-sm">
        <span className="font-medium">Repository</span>
        <input
          name="repo"
          required
          // The last repository is filled in: the prompt is then what is left to write.
          {...(repo ? {} : { "data-autofocus": true })}
          placeholder="/path/to/repo or a git URL"
          value={repo}
          onChange={(e) => setRepo(e.target.value)}
          className={`${inputClass} font-mono`}
        />
      </label>
      <label className="grid gap-1 text-sm">
        <span className="font-medium">Prompt</span>
        <textarea
          name="prompt"
          required
          {...(repo ? { "data-autofocus": true } : {})}
          rows={3}
          placeholder="What should the agent do?"
          value={prompt}
          onChange={(e) => setPrompt(e.target.value)}
          className={inputClass}
        />
      </label>
      <div className="flex flex-wrap items-end gap-3">
        <label className="grid min-w-0 flex-1 gap-1 text-sm">
          <span className="font-medium">Model</span>
          <select
            name="model"
            value={chosen}
            onChange={(e) => setModel(e.target.value)}
            className={inputClass}
          >
            <ModelOptions models={models.data?.models} />
          </select>
        </label>
        <Button tone="primary" type="submit" disabled={create.isPending || !repo.trim() || !prompt.trim()}>
          {create.isPending ? "Starting…" : "Start session"}
        </Button>
      </div>
      <ErrorNote error={create.error ?? models.error} />
    </form>
  );
}

function SessionRow({ s }: { s: Session }) {
  return (
    <li>
      <Link
        to="/s/$id"
        params={{ id: s.id }}
        className="flex flex-col gap-1 px-4 py-3 hover:bg-stone-50 sm:flex-row sm:items-center sm:gap-4 dark:hover:bg-stone-800/50"
      >
        <span className="min-w-0 flex-1">
          <span className="block truncate font-medium">{s.title}</span>
          <span className="block truncate font-mono text-xs text-stone-500">{s.repo}</span>
        </span>
        <span className="flex items-center gap-3 text-xs text-stone-500">
          {s.pendingPermissions > 0 && (
            <span className="font-medium text-amber-700">{s.pendingPermissions} waiting</span>
          )}
          <span className="hidden sm:inline">{s.model}</span>
          <span>{timeAgo(s.updatedAt)}</span>
          <StatusBadge status={s.status} />
        </span>
      </Link>
    </li>
  );
}

const PAGE = 50;
type Status = Exclude<Session["status"], "deleted">;
type OverviewCounts = Record<Status, number>;

// The filter pills, in the order a person scans for trouble: what runs, what waits on them, the rest.
const FILTERS: [Status | "", string][] = [
  ["", "All"],
  ["running", "Running"],
  ["waiting_permission", "Needs approval"],
  ["idle", "Idle"],
  ["queued", "Queued"],
  ["provisioning", "Provisioning"],
  ["interrupted", "Interrupted"],
  ["failed", "Failed"],
];
const isStatus = (v: unknown): v is Status => FILTERS.some(([s]) => s !== "" && s === v);

/**
 * The filters live in the URL (`/s?status=idle&q=api`), so the Overview can link to a filtered list
 * and a filtered list survives a reload. The search box edits a local copy and writes it back after
 * a pause in typing, so the list is not re-read on every keystroke.
 */
function useFilters() {
  const search = useRouterState({ select: (s) => s.location.search as Record<string, unknown> });
  const navigate = useNavigate();
  const raw = search.status;
  const status: Status | "" = isStatus(raw) ? raw : "";
  // The router parses values as JSON where it can: a search for "42" comes back as a number.
  const q = search.q === undefined || search.q === null ? "" : String(search.q);
  const set = (next: { status?: Status | ""; q?: string }) => {
    const merged = { status, q, ...next };
    const out: Record<string, string> = {};
    if (merged.status) out.status = merged.status;
    if (merged.q.trim()) out.q = merged.q.trim();
    void navigate({ to: "/s", search: out, replace: true });
  };
  return { status, q, set };
}

function StatusFilter({
  value,
  counts,
  onChange,
}: {
  value: Status | "";
  counts: OverviewCounts | undefined;
  onChange: (s: Status | "") => void;
}) {
  return (
    <fieldset className="flex flex-wrap gap-1.5">
      <legend className="sr-only">Filter by status</legend>
      {FILTERS.map(([s, name]) => {
        const n = s === "" ? undefined : counts?.[s];
        const on = value === s;
        return (
          <button
            key={s || "all"}
            type="button"
            aria-pressed={on}
            onClick={() => onChange(s)}
            className={`inline-flex items-center gap-1.5 rounded-full border px-2.5 py-1 text-xs font-medium transition ${
              on
                ? "border-stone-900 bg-stone-900 text-white dark:border-stone-100 dark:bg-stone-100 dark:text-stone-900"
                : "border-stone-300 bg-white text-stone-700 hover:bg-stone-100 dark:border-stone-700 dark:bg-stone-900 dark:text-stone-300 dark:hover:bg-stone-800"
            }`}
          >
            {name}
            {n !== undefined && n > 0 && (
              <span className={`tabular-nums ${on ? "opacity-80" : "text-stone-500 dark:text-stone-400"}`}>
                {n}
              </span>
            )}
          </button>
        );
      })}
    </fieldset>
  );
}

function SearchBox({ value, onChange }: { value: string; onChange: (q: string) => void }) {
  const [text, setText] = useState(value);
  // Follow the URL when it changes from outside (back button, a link); not while the user types.
  const last = useRef(value);
  useEffect(() => {
    if (value !== last.current) {
      last.current = value;
      setText(value);
    }
  }, [value]);
  const changed = useRef(onChange);
  changed.current = onChange;
  useEffect(() => {
    if (text.trim() === last.current.trim()) return;
    const t = setTimeout(() => {
      last.current = text.trim();
      changed.current(text);
    }, 250);
    return () => clearTimeout(t);
  }, [text]);
  return (
    <input
      type="search"
      aria-label="Search sessions"
      placeholder="Search title or repository"
      value={text}
      onChange={(e) => setText(e.target.value)}
      className={`${inputClass} py-1.5 sm:w-64`}
    />
  );
}

export function SessionsPage() {
  const { status, q, set } = useFilters();
  const filters = { ...(status ? { status } : {}), ...(q.trim() ? { q: q.trim() } : {}) };
  // No polling: the app-wide activity hook invalidates ["sessions"] (and ["overview"], whose counts
  // label the filters) whenever the server reports a change.
  const list = useInfiniteQuery({
    queryKey: ["sessions", filters],
    queryFn: ({ pageParam }) => api.sessions.list({ ...filters, limit: PAGE, cursor: pageParam }),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last) => last.nextCursor ?? undefined,
    placeholderData: keepPreviousData,
  });
  const overview = useQuery({ queryKey: ["overview"], queryFn: api.overview });
  const items = list.data?.pages.flatMap((p) => p.items) ?? [];
  const filtered = Object.keys(filters).length > 0;
  // Starting a session is a dialog, so the list is what the page shows first.
  const [creating, setCreating] = useState(false);
  return (
    <div className="grid grid-cols-[minmax(0,1fr)] gap-6">
      <Dialog open={creating} onClose={() => setCreating(false)} title="New session">
        <NewSessionForm onDone={() => setCreating(false)} />
      </Dialog>
      <section aria-labelledby="sessions-heading" className="grid gap-3">
        <div className="flex flex-wrap items-center gap-3">
          <h1 id="sessions-heading" className="mr-auto text-lg font-semibold">
            Sessions
          </h1>
          {/* Beside the heading on a phone (the search takes the next row); after the search on wider screens. */}
          <Button
            tone="primary"
            onClick={() => setCreating(true)}
            aria-haspopup="dialog"
            className="sm:order-last"
          >
            New session
          </Button>
          <SearchBox value={q} onChange={(text) => set({ q: text })} />
        </div>
        <StatusFilter value={status} counts={overview.data?.sessions} onChange={(s) => set({ status: s })} />
        <ErrorNote error={list.error} />
        {list.isPending && <p className="text-sm text-stone-500">Loading sessions…</p>}
        {list.data && items.length === 0 && (
          <Card className="text-center">
            {filtered ? (
              <div className="grid justify-items-center gap-2">
                <p className="text-sm text-stone-500">No session matches these filters.</p>
                <Button onClick={() => set({ status: "", q: "" })}>Clear filters</Button>
              </div>
            ) : (
              <p className="text-sm text-stone-500">No sessions yet. Start one with New session.</p>
            )}
          </Card>
        )}
        {items.length > 0 && (
          <ul
            aria-label="Sessions"
            className={`divide-y divide-stone-200 overflow-hidden rounded-lg border border-stone-200 bg-white transition-opacity dark:divide-stone-800 dark:border-stone-800 dark:bg-stone-900 ${list.isPlaceholderData ? "opacity-60" : ""}`}
          >
            {items.map((s) => (
              <SessionRow key={s.id} s={s} />
            ))}
          </ul>
        )}
        <LoadMore query={list} />
      </section>
    </div>
  );
}
