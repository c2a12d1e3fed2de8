import type { SecretInfo } from "@flotilla/contracts";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { api } from "../api.ts";
import { controlProps, Field, fieldErrorOf, listClass } from "../tasks/task-ui.tsx";
import { Button, Card, ErrorNote, inputClass } from "../ui.tsx";
import { isForbidden, Pill, SettingsTabs, When } from "./settings.tsx";

const FIELDS = new Set(["name", "value", "projectId"]);

// Secrets change from the CLI and the API too, and the activity feed does not tell of them: the list
// is re-read now and then (and when the window regains focus), so one set elsewhere shows up here.
const POLL_MS = 5000;

const useSecrets = () =>
  useQuery({
    queryKey: ["secrets"],
    queryFn: api.secrets.list,
    refetchInterval: (q) => (isForbidden(q.state.error) ? false : POLL_MS),
    // A member gets 403 here; that is an answer, not an error worth retrying.
    retry: (n, e) => !isForbidden(e) && n < 2,
  });

function AddSecret() {
  const qc = useQueryClient();
  const [name, setName] = useState("");
  const [value, setValue] = useState("");
  const [projectId, setProjectId] = useState("");
  const [saved, setSaved] = useState<SecretInfo>();
  const add = useMutation({
    mutationFn: () =>
      api.secrets.set({
        name: name.trim(),
        value,
        ...(projectId.trim() ? { projectId: projectId.trim() } : {}),
      }),
    onSuccess: (s) => {
      // The value leaves the page's state as soon as the server has it: nothing here can show it again.
      setValue("");
      setName("");
      setSaved(s);
      void qc.invalidateQueries({ queryKey: ["secrets"] });
    },
  });
  const apiError = fieldErrorOf(add.error);
  const errorFor = (f: string) => (apiError?.field === f ? apiError.message : undefined);
  const formError = add.error && !(apiError && FIELDS.has(apiError.field)) ? add.error : null;
  const submit = (ev: FormEvent) => {
    ev.preventDefault();
    setSaved(undefined);
    add.mutate();
  };
  return (
    <Card>
      <h2 className="font-semibold">Add a secret</h2>
      <p className="mt-0.5 text-xs text-stone-500">
        Stored encrypted; its value is never shown again, here or by the API. An organisation secret named
        like a provider's key variable (<code className="font-mono">ANTHROPIC_API_KEY</code>) is that
        provider's key. Setting a name again replaces its value.
      </p>
      <form onSubmit={submit} aria-label="Add a secret" className="mt-4 grid gap-4">
        <div className="grid gap-4 sm:grid-cols-3">
          <Field
            id="secret-name"
            label="Name"
            error={errorFor("name")}
            hint="Like an environment variable: letters, digits and _"
          >
            <input
              {...controlProps("secret-name", errorFor("name"), "hint")}
              name="name"
              required
              maxLength={128}
              autoComplete="off"
              spellCheck={false}
              placeholder="ANTHROPIC_API_KEY"
              value={name}
              onChange={(e) => setName(e.target.value)}
              className={`${inputClass} font-mono`}
            />
          </Field>
          <Field id="secret-value" label="Value" error={errorFor("value")} hint="Write-only">
            <input
              {...controlProps("secret-value", errorFor("value"), "hint")}
              name="value"
              type="password"
              required
              maxLength={65_536}
              // A secret for a server, not the person's own password: no saving, no suggesting.
              autoComplete="new-password"
              value={value}
              onChange={(e) => setValue(e.target.value)}
              className={`${inputClass} font-mono`}
            />
          </Field>
          <Field
            id="secret-project"
            label="Project id"
            error={errorFor("projectId")}
            hint="Optional: blank means the whole organisation"
          >
            <input
              {...controlProps("secret-project", errorFor("projectId"), "hint")}
              name="projectId"
              maxLength={100}
              autoComplete="off"
              placeholder="prj_…"
              value={projectId}
              onChange={(e) => setProjectId(e.target.value)}
              className={`${inputClass} font-mono`}
            />
          </Field>
        </div>
        <div className="flex flex-wrap items-center gap-3">
          <Button tone="primary" type="submit" disabled={add.isPending || !name.trim() || !value}>
            {add.isPending ? "Saving…" : "Save secret"}
          </Button>
          {saved && (
            <p role="status" className="text-sm text-emerald-800 dark:text-emerald-200">
              Saved <code className="font-mono">{saved.name}</code>
              {saved.projectId ? ` for ${saved.projectId}` : " for the organisation"}.
            </p>
          )}
        </div>
        <ErrorNote error={formError} />
      </form>
    </Card>
  );
}

function SecretRow({ s }: { s: SecretInfo }) {
  const qc = useQueryClient();
  const [confirming, setConfirming] = useState(false);
  const del = useMutation({
    mutationFn: () => api.secrets.delete(s.id),
    onSuccess: () => {
      qc.setQueryData<SecretInfo[]>(["secrets"], (old) => old?.filter((x) => x.id !== s.id));
      void qc.invalidateQueries({ queryKey: ["secrets"] });
    },
  });
  const where = s.scope === "project" ? `project ${s.projectId}` : "organisation";
  return (
    <li data-testid="secret-row" data-name={s.name} className="grid gap-2 px-4 py-3">
      <div className="flex flex-col gap-2 sm:flex-row sm:items-center sm:gap-4">
        <div className="min-w-0 flex-1">
          <div className="flex min-w-0 flex-wrap items-center gap-2">
            <code className="truncate font-mono text-sm font-medium">{s.name}</code>
            <Pill tone={s.scope === "org" ? "dark" : "plain"}>{s.scope}</Pill>
            {s.projectId && <span className="font-mono text-xs text-stone-500">{s.projectId}</span>}
          </div>
          <div className="mt-0.5 flex flex-wrap gap-x-3 gap-y-0.5 text-xs text-stone-500">
            <span>
              updated <When iso={s.updatedAt} />
            </span>
            <span data-testid="secret-last-used">
              last used <When iso={s.lastUsedAt} />
            </span>
            <span title="The master key its data key is wrapped with">
              key <span className="font-mono">{s.keyId}</span>
            </span>
          </div>
        </div>
        {!confirming && (
          <Button tone="danger" className="self-start sm:self-auto" onClick={() => setConfirming(true)}>
            Delete
          </Button>
        )}
      </div>
      {confirming && (
        <div
          role="alertdialog"
          aria-label={`Delete ${s.name}`}
          className="flex flex-col gap-2 rounded-md border border-red-200 bg-red-50 p-3 text-sm sm:flex-row sm:items-center dark:border-red-900 dark:bg-red-950/40"
        >
          <p className="flex-1 text-red-900 dark:text-red-200">
            Delete <code className="font-mono">{s.name}</code> ({where})? Sessions started from now on no
            longer get it; its value cannot be recovered.
          </p>
          <div className="flex shrink-0 gap-2">
            <Button onClick={() => setConfirming(false)} disabled={del.isPending}>
              Keep
            </Button>
            <Button tone="danger" onClick={() => del.mutate()} disabled={del.isPending}>
              {del.isPending ? "Deleting…" : "Delete secret"}
            </Button>
          </div>
        </div>
      )}
      <ErrorNote error={del.error} />
    </li>
  );
}

export function SecretsPage() {
  const list = useSecrets();
  const items = [...(list.data ?? [])].sort(
    (a, b) => a.name.localeCompare(b.name) || (a.projectId ?? "").localeCompare(b.projectId ?? ""),
  );
  return (
    <div className="grid grid-cols-[minmax(0,1fr)] gap-6">
      <SettingsTabs />
      {isForbidden(list.error) ? (
        <Card>
          <p data-testid="secrets-forbidden" className="text-sm text-stone-500">
            Only admins manage secrets. Ask an admin to set the one you need (
            <code className="font-mono">flotilla secrets set</code> with an admin token, or this page).
          </p>
        </Card>
      ) : (
        <>
          <AddSecret />
          <section aria-labelledby="secrets-heading">
            <h2 id="secrets-heading" className="font-semibold">
              Secrets
            </h2>
            <p className="mb-2 mt-0.5 text-sm text-stone-500 dark:text-stone-400">
              Names and where they apply, never values. Ones set with{" "}
              <code className="font-mono">flotilla secrets</code> or the API show up here on their own.
            </p>
            <ErrorNote error={list.error} />
            {list.isPending && <p className="text-sm text-stone-500">Loading secrets…</p>}
            {list.data && items.length === 0 && (
              <p className="text-sm text-stone-500">No secrets yet. Add one above.</p>
            )}
            {items.length > 0 && (
              <ul aria-label="Secrets" className={listClass}>
                {items.map((s) => (
                  <SecretRow key={s.id} s={s} />
                ))}
              </ul>
            )}
          </section>
        </>
      )}
    </div>
  );
}
