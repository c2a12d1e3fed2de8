import type { Session } from "@flotilla/client";
import { useMutation, useQuery } from "@tanstack/react-query";
import { Link, useNavigate } from "@tanstack/react-router";
import { type FormEvent, useState } from "react";
import { api } from "../api.ts";
import { Button, Card, ErrorNote, inputClass, StatusBadge, timeAgo } from "../ui.tsx";

const LAST_REPO = "flotilla.lastRepo";

function NewSessionForm() {
  const navigate = useNavigate();
  const models = useQuery({ queryKey: ["models"], queryFn: api.models });
  const [repo, setRepo] = useState(() => localStorage.getItem(LAST_REPO) ?? "");
  const [prompt, setPrompt] = useState("");
  const [model, setModel] = useState("");
  const create = useMutation({
    mutationFn: () => api.sessions.create({ repo: repo.trim(), prompt, ...(model ? { model } : {}) }),
    onSuccess: (s) => {
      localStorage.setItem(LAST_REPO, repo.trim());
      void navigate({ to: "/s/$id", params: { id: s.id } });
    },
  });
  const submit = (ev: FormEvent) => {
    ev.preventDefault();
    create.mutate();
  };
  const chosen = model || models.data?.default || "";
  return (
    <Card>
      <h2 className="font-semibold">New session</h2>
      <form onSubmit={submit} className="mt-3 grid gap-3">
        <label className="grid gap-1 text-sm">
          <span className="font-medium">Repository</span>
          <input
            name="repo"
            required
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
              {models.data?.models.map((m) => (
                <option key={m.id} value={m.id}>
                  {m.name} ({m.id}){m.demo ? " — demo, not an LLM" : ""}
                </option>
              ))}
            </select>
          </label>
          <Button tone="primary" type="submit" disabled={create.isPending || !repo.trim() || !prompt.trim()}>
            {create.isPending ? "Starting…" : "Start session"}
          </Button>
        </div>
        <ErrorNote error={create.error ?? models.error} />
      </form>
    </Card>
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

export function SessionsPage() {
  // Polling keeps every row's status honest without one stream per session; 2 s is calm enough.
  const list = useQuery({
    queryKey: ["sessions"],
    queryFn: () => api.sessions.list({ limit: 50 }),
    refetchInterval: 2000,
  });
  return (
    <div className="grid gap-6">
      <NewSessionForm />
      <section>
        <h2 className="mb-2 font-semibold">Sessions</h2>
        <ErrorNote error={list.error} />
        {list.data && list.data.items.length === 0 && (
          <p className="text-sm text-stone-500">No sessions yet. Start one above.</p>
        )}
        {list.data && list.data.items.length > 0 && (
          <ul className="divide-y divide-stone-200 overflow-hidden rounded-lg border border-stone-200 bg-white dark:divide-stone-800 dark:border-stone-800 dark:bg-stone-900">
            {list.data.items.map((s) => (
              <SessionRow key={s.id} s={s} />
            ))}
          </ul>
        )}
      </section>
    </div>
  );
}
