import type { CreateTaskBody } from "@flotilla/contracts";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useNavigate } from "@tanstack/react-router";
import { type FormEvent, useState } from "react";
import { api } from "../api.ts";
import { Button, ErrorNote, inputClass, ModelOptions } from "../ui.tsx";
import { controlProps, Field, fieldErrorOf } from "./task-ui.tsx";

// Shared with the new-session form: whichever was used last is the likeliest next repository.
const LAST_REPO = "flotilla.lastRepo";

/** "team=web, kind=bug" (commas or new lines) → { team: "web", kind: "bug" }; a string is the error. */
export function parseLabels(text: string): Record<string, string> | string {
  const out: Record<string, string> = {};
  for (const raw of text.split(/[,\n]/)) {
    const item = raw.trim();
    if (!item) continue;
    const i = item.indexOf("=");
    if (i <= 0) return `"${item}" is not key=value`;
    const key = item.slice(0, i).trim();
    if (key.length > 63) return `label key "${key.slice(0, 20)}…" is longer than 63 characters`;
    out[key] = item.slice(i + 1).trim();
  }
  if (Object.keys(out).length > 32) return "at most 32 labels";
  return out;
}

const ADVANCED = new Set(["baseRef", "agent", "webhook", "idempotencyKey"]);
const idOf = (field: string) => `task-${field}`;

/** The new-task form; a submitted task's own page is where its progress is followed. */
export function TaskForm({ onDone }: { onDone?: () => void }) {
  const qc = useQueryClient();
  const navigate = useNavigate();
  const models = useQuery({ queryKey: ["models"], queryFn: api.models });
  const [repo, setRepo] = useState(() => localStorage.getItem(LAST_REPO) ?? "");
  const [prompt, setPrompt] = useState("");
  const [model, setModel] = useState("");
  const [permission, setPermission] = useState<"allow" | "ask" | "read-only">("allow");
  const [priority, setPriority] = useState("0");
  const [timeoutMin, setTimeoutMin] = useState("60");
  const [maxAttempts, setMaxAttempts] = useState("3");
  const [maxCostUsd, setMaxCostUsd] = useState("");
  const [budgetMode, setBudgetMode] = useState<"hard" | "warn">("hard");
  const [verify, setVerify] = useState("");
  const [labels, setLabels] = useState("");
  const [baseRef, setBaseRef] = useState("");
  const [agent, setAgent] = useState("");
  const [webhook, setWebhook] = useState("");
  const [idempotencyKey, setIdempotencyKey] = useState("");
  const [commit, setCommit] = useState(false);
  const [pr, setPr] = useState(false);
  const [advancedOpen, setAdvancedOpen] = useState(false);
  const [localError, setLocalError] = useState<{ field: string; message: string }>();

  const submit = useMutation({
    mutationFn: (body: CreateTaskBody) => api.tasks.submit(body),
    onSuccess: (res) => {
      localStorage.setItem(LAST_REPO, repo.trim());
      setPrompt("");
      setIdempotencyKey("");
      qc.setQueryData(["task", res.task.id], res.task);
      void qc.invalidateQueries({ queryKey: ["tasks"] });
      onDone?.();
      // A second submit with the same idempotency key answers with the first task: go there too.
      void navigate({ to: "/t/$id", params: { id: res.task.id } });
    },
    onError: (e) => {
      const f = fieldErrorOf(e);
      if (f && ADVANCED.has(f.field)) setAdvancedOpen(true);
      // After the re-render that shows the message, so the control is there (and open) to focus.
      if (f) requestAnimationFrame(() => document.getElementById(idOf(f.field))?.focus());
    },
  });

  const apiError = fieldErrorOf(submit.error);
  const errorFor = (field: string) =>
    localError?.field === field
      ? localError.message
      : apiError?.field === field
        ? apiError.message
        : undefined;
  const FIELDS = [
    "repo",
    "prompt",
    "model",
    "permission",
    "priority",
    "timeoutMs",
    "maxAttempts",
    "maxCostUsd",
    "budgetMode",
    "verify",
    "labels",
    ...ADVANCED,
  ];
  // An error the form has no control for (queue full, no default model…) is shown under the form.
  const formError = submit.error && !(apiError && FIELDS.includes(apiError.field)) ? submit.error : null;

  const onSubmit = (ev: FormEvent) => {
    ev.preventDefault();
    setLocalError(undefined);
    const parsed = parseLabels(labels);
    if (typeof parsed === "string") {
      setLocalError({ field: "labels", message: parsed });
      document.getElementById(idOf("labels"))?.focus();
      return;
    }
    const num = (s: string) => (s.trim() === "" ? undefined : Number(s));
    const minutes = num(timeoutMin);
    const body: CreateTaskBody = {
      repo: repo.trim(),
      prompt,
      permission,
      priority: num(priority),
      maxAttempts: num(maxAttempts),
      // The mode only means something with a budget to apply it to.
      ...(num(maxCostUsd) !== undefined ? { maxCostUsd: num(maxCostUsd), budgetMode } : {}),
      timeoutMs: minutes === undefined ? undefined : Math.round(minutes * 60_000),
      labels: parsed,
      ...(model ? { model } : {}),
      ...(verify.trim() ? { verify: verify.trim() } : {}),
      ...(baseRef.trim() ? { baseRef: baseRef.trim() } : {}),
      ...(agent.trim() ? { agent: agent.trim() } : {}),
      ...(webhook.trim() ? { webhook: webhook.trim() } : {}),
      ...(idempotencyKey.trim() ? { idempotencyKey: idempotencyKey.trim() } : {}),
      // A pull request commits (and pushes) first: `pr` implies `commit`.
      ...(pr ? { pr: { draft: true } } : commit ? { commit: true } : {}),
    };
    submit.mutate(body);
  };

  const chosen = model || models.data?.default || "";
  const text = (field: string, hint?: string) => controlProps(idOf(field), errorFor(field), hint);

  return (
    <form onSubmit={onSubmit} className="mt-3 grid gap-4" aria-label="New task">
      <Field id={idOf("repo")} label="Repository" error={errorFor("repo")}>
        <input
          {...text("repo")}
          name="repo"
          required
          {...(repo ? {} : { "data-autofocus": true })}
          maxLength={4096}
          placeholder="/path/to/repo or a git URL"
          value={repo}
          onChange={(e) => setRepo(e.target.value)}
          className={`${inputClass} font-mono`}
        />
      </Field>
      <Field id={idOf("prompt")} label="Prompt" error={errorFor("prompt")}>
        <textarea
          {...text("prompt")}
          name="prompt"
          required
          {...(repo ? { "data-autofocus": true } : {})}
          rows={3}
          placeholder="What should the agent do?"
          value={prompt}
          onChange={(e) => setPrompt(e.target.value)}
          className={inputClass}
        />
      </Field>
      <div className="grid gap-4 sm:grid-cols-2">
        <Field id={idOf("model")} label="Model" error={errorFor("model")}>
          <select
            {...text("model")}
            name="model"
            value={chosen}
            onChange={(e) => setModel(e.target.value)}
            className={inputClass}
          >
            <ModelOptions models={models.data?.models} />
          </select>
        </Field>
        <Field
          id={idOf("permission")}
          label="Permissions"
          error={errorFor("permission")}
          hint={permission === "ask" ? "The task waits on its session page for your approval." : undefined}
        >
          <select
            {...text("permission", permission === "ask" ? "hint" : undefined)}
            name="permission"
            value={permission}
            onChange={(e) => setPermission(e.target.value as typeof permission)}
            className={inputClass}
          >
            <option value="allow">Allow everything (unattended)</option>
            <option value="ask">Ask me before edits and commands</option>
            <option value="read-only">Read-only</option>
          </select>
        </Field>
      </div>
      <div className="grid grid-cols-2 gap-4 sm:grid-cols-3">
        <Field
          id={idOf("priority")}
          label="Priority"
          error={errorFor("priority")}
          hint="−100 to 100; higher first"
        >
          <input
            {...text("priority", "hint")}
            name="priority"
            type="number"
            inputMode="numeric"
            min={-100}
            max={100}
            step={1}
            value={priority}
            onChange={(e) => setPriority(e.target.value)}
            className={inputClass}
          />
        </Field>
        <Field
          id={idOf("timeoutMs")}
          label="Timeout (minutes)"
          error={errorFor("timeoutMs")}
          hint="Per attempt, up to 1440"
        >
          <input
            {...text("timeoutMs", "hint")}
            name="timeout"
            type="number"
            inputMode="numeric"
            min={1}
            max={1440}
            step={1}
            value={timeoutMin}
            onChange={(e) => setTimeoutMin(e.target.value)}
            className={inputClass}
          />
        </Field>
        <Field id={idOf("maxAttempts")} label="Max attempts" error={errorFor("maxAttempts")} hint="1 to 20">
          <input
            {...text("maxAttempts", "hint")}
            name="maxAttempts"
            type="number"
            inputMode="numeric"
            min={1}
            max={20}
            step={1}
            value={maxAttempts}
            onChange={(e) => setMaxAttempts(e.target.value)}
            className={inputClass}
          />
        </Field>
        <Field
          id={idOf("maxCostUsd")}
          label="Budget (USD)"
          error={errorFor("maxCostUsd")}
          hint="over every attempt"
        >
          <input
            {...text("maxCostUsd", "hint")}
            name="maxCostUsd"
            type="number"
            inputMode="decimal"
            min={0}
            step="any"
            placeholder="no limit"
            value={maxCostUsd}
            onChange={(e) => setMaxCostUsd(e.target.value)}
            className={inputClass}
          />
        </Field>
        <Field
          id={idOf("budgetMode")}
          label="Past the budget"
          error={errorFor("budgetMode")}
          hint={
            maxCostUsd.trim() === ""
              ? "set a budget first"
              : budgetMode === "hard"
                ? "hard: the next model call is refused"
                : "warn: calls go on; the session shows a warning"
          }
        >
          <select
            {...text("budgetMode", "hint")}
            name="budgetMode"
            value={budgetMode}
            disabled={maxCostUsd.trim() === ""}
            onChange={(e) => setBudgetMode(e.target.value as "hard" | "warn")}
            className={inputClass}
          >
            <option value="hard">Stop (hard)</option>
            <option value="warn">Warn and go on</option>
          </select>
        </Field>
      </div>
      <div className="grid gap-4 sm:grid-cols-2">
        <Field
          id={idOf("verify")}
          label="Verify command"
          error={errorFor("verify")}
          hint="Optional. Runs in the workspace after the agent; exit 0 means success"
        >
          <input
            {...text("verify", "hint")}
            name="verify"
            maxLength={10_000}
            placeholder="npm test"
            value={verify}
            onChange={(e) => setVerify(e.target.value)}
            className={`${inputClass} font-mono`}
          />
        </Field>
        <Field
          id={idOf("labels")}
          label="Labels"
          error={errorFor("labels")}
          hint="Optional. key=value, separated by commas"
        >
          <input
            {...text("labels", "hint")}
            name="labels"
            placeholder="team=web, kind=bug"
            value={labels}
            onChange={(e) => setLabels(e.target.value)}
            className={`${inputClass} font-mono`}
          />
        </Field>
      </div>
      <fieldset className="grid gap-2 text-sm">
        <legend className="mb-1 font-medium">On success</legend>
        <label className={`flex items-start gap-2 ${pr ? "opacity-60" : ""}`}>
          <input
            type="checkbox"
            name="commit"
            className="mt-0.5"
            checked={commit || pr}
            disabled={pr}
            onChange={(e) => setCommit(e.target.checked)}
          />
          <span>
            Commit on success
            <span className="block text-xs text-stone-500">
              The agent's changes, committed on the session's branch
            </span>
          </span>
        </label>
        <label className="flex items-start gap-2">
          <input
            type="checkbox"
            name="pr"
            className="mt-0.5"
            checked={pr}
            onChange={(e) => setPr(e.target.checked)}
          />
          <span>
            Open a pull request on success
            <span className="block text-xs text-stone-500">
              Commits, pushes the branch and opens a draft pull request (a forge must be configured for its
              host)
            </span>
          </span>
        </label>
      </fieldset>
      <details
        open={advancedOpen}
        onToggle={(e) => setAdvancedOpen(e.currentTarget.open)}
        className="rounded-md border border-stone-200 px-3 py-2 dark:border-stone-800"
      >
        <summary className="cursor-pointer select-none text-sm font-medium text-stone-600 dark:text-stone-400">
          More options
        </summary>
        <div className="mt-3 grid gap-4 pb-1 sm:grid-cols-2">
          <Field id={idOf("baseRef")} label="Base ref" error={errorFor("baseRef")} hint="Default: HEAD">
            <input
              {...text("baseRef", "hint")}
              name="baseRef"
              maxLength={255}
              placeholder="main"
              value={baseRef}
              onChange={(e) => setBaseRef(e.target.value)}
              className={`${inputClass} font-mono`}
            />
          </Field>
          <Field id={idOf("agent")} label="Agent" error={errorFor("agent")} hint="Default: the harness's own">
            <input
              {...text("agent", "hint")}
              name="agent"
              maxLength={100}
              placeholder="build"
              value={agent}
              onChange={(e) => setAgent(e.target.value)}
              className={inputClass}
            />
          </Field>
          <Field
            id={idOf("webhook")}
            label="Webhook URL"
            error={errorFor("webhook")}
            hint="Receives this task's state changes, signed with the organisation's secret"
          >
            <input
              {...text("webhook", "hint")}
              name="webhook"
              type="url"
              maxLength={2048}
              placeholder="https://example.com/hooks/flotilla"
              value={webhook}
              onChange={(e) => setWebhook(e.target.value)}
              className={`${inputClass} font-mono`}
            />
          </Field>
          <Field
            id={idOf("idempotencyKey")}
            label="Idempotency key"
            error={errorFor("idempotencyKey")}
            hint="A second submit with the same key returns the first task"
          >
            <input
              {...text("idempotencyKey", "hint")}
              name="idempotencyKey"
              maxLength={200}
              value={idempotencyKey}
              onChange={(e) => setIdempotencyKey(e.target.value)}
              className={`${inputClass} font-mono`}
            />
          </Field>
        </div>
      </details>
      <div className="flex flex-wrap items-center gap-3">
        <Button tone="primary" type="submit" disabled={submit.isPending || !repo.trim() || !prompt.trim()}>
          {submit.isPending ? "Submitting…" : "Submit task"}
        </Button>
      </div>
      <ErrorNote error={formError ?? models.error} />
    </form>
  );
}
