import type { AuditEvent, AuditFilters, AuditVerification } from "@flotilla/contracts";
import { useInfiniteQuery, useMutation } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { api } from "../api.ts";
import { listClass } from "../tasks/task-ui.tsx";
import { Button, Card, ErrorNote, inputClass, LoadMore } from "../ui.tsx";
import { isForbidden, Pill, SettingsTabs, When } from "./settings.tsx";

const OUTCOMES = ["ok", "denied", "failed"] as const;

function Row({ e }: { e: AuditEvent }) {
  const detail = Object.keys(e.detail).length ? JSON.stringify(e.detail) : "";
  return (
    <li data-testid="audit-row" data-seq={e.seq} className="grid gap-1 px-4 py-2 text-sm">
      <div className="flex flex-wrap items-center gap-x-3 gap-y-1">
        <span className="font-mono text-xs text-stone-500">#{e.seq}</span>
        <code className="font-mono font-medium">{e.action}</code>
        <Pill tone={e.outcome === "ok" ? "plain" : "warn"}>{e.outcome}</Pill>
        {e.targetId && (
          <span className="font-mono text-xs">
            {e.targetType} {e.targetId}
          </span>
        )}
        <span className="ml-auto text-xs text-stone-500">
          <When iso={e.at} />
        </span>
      </div>
      <div className="flex flex-wrap gap-x-3 gap-y-0.5 text-xs text-stone-500">
        <span>
          by {e.actorLabel ? `${e.actorLabel} ` : ""}
          <span className="font-mono">{e.actor}</span>
        </span>
        {e.ip && <span>from {e.ip}</span>}
        {e.requestId && <span className="font-mono">request {e.requestId}</span>}
        {detail && <span className="truncate font-mono">{detail}</span>}
      </div>
    </li>
  );
}

function Verify() {
  const verify = useMutation({ mutationFn: api.audit.verify });
  const v: AuditVerification | undefined = verify.data;
  return (
    <div className="flex flex-wrap items-center gap-3">
      <Button onClick={() => verify.mutate()} disabled={verify.isPending}>
        {verify.isPending ? "Verifying…" : "Verify chain"}
      </Button>
      {v && (
        <p
          role="status"
          data-testid="audit-verdict"
          className={`text-sm ${v.ok ? "text-emerald-800 dark:text-emerald-200" : "text-red-800 dark:text-red-200"}`}
        >
          {v.ok
            ? `Intact: ${v.checked} rows, chain head at ${v.headSeq}.`
            : `Tampered at seq ${v.firstBadSeq}: ${v.reason}`}
        </p>
      )}
      <ErrorNote error={verify.error} />
    </div>
  );
}

export function AuditPage() {
  const [draft, setDraft] = useState<AuditFilters>({});
  const [filters, setFilters] = useState<AuditFilters>({});
  const log = useInfiniteQuery({
    queryKey: ["audit", filters],
    queryFn: ({ pageParam }) => api.audit.list({ ...filters, limit: 100, cursor: pageParam }),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last) => last.nextCursor ?? undefined,
    retry: (n, e) => !isForbidden(e) && n < 2,
  });
  const items = log.data?.pages.flatMap((p) => p.items) ?? [];
  const apply = (ev: FormEvent) => {
    ev.preventDefault();
    setFilters(Object.fromEntries(Object.entries(draft).filter(([, v]) => v)) as AuditFilters);
  };
  const text = (k: "action" | "actor" | "target", label: string, placeholder: string) => (
    <label className="grid gap-1 text-sm">
      <span className="text-stone-600 dark:text-stone-400">{label}</span>
      <input
        name={k}
        value={draft[k] ?? ""}
        placeholder={placeholder}
        autoComplete="off"
        spellCheck={false}
        onChange={(e) => setDraft({ ...draft, [k]: e.target.value.trim() || undefined })}
        className={`${inputClass} font-mono`}
      />
    </label>
  );
  return (
    <div className="grid grid-cols-[minmax(0,1fr)] gap-6">
      <SettingsTabs />
      {isForbidden(log.error) ? (
        <Card>
          <p data-testid="audit-forbidden" className="text-sm text-stone-500">
            Only admins read the audit log.
          </p>
        </Card>
      ) : (
        <>
          <Card>
            <h2 className="font-semibold">Audit log</h2>
            <p className="mt-0.5 text-xs text-stone-500">
              Who did what, when and from where: append-only and hash-chained, so a row changed, added or
              removed in the database is found by verifying the chain (also{" "}
              <code className="font-mono">flotilla audit verify</code>). Export with{" "}
              <code className="font-mono">flotilla audit export</code>.
            </p>
            <form
              onSubmit={apply}
              aria-label="Filter the audit log"
              className="mt-4 grid gap-3 sm:grid-cols-5"
            >
              {text("action", "Action starts with", "token.")}
              {text("actor", "Actor", "tok_… or system")}
              {text("target", "Target", "ses_…")}
              <label className="grid gap-1 text-sm">
                <span className="text-stone-600 dark:text-stone-400">Outcome</span>
                <select
                  name="outcome"
                  value={draft.outcome ?? ""}
                  onChange={(e) =>
                    setDraft({ ...draft, outcome: (e.target.value || undefined) as AuditFilters["outcome"] })
                  }
                  className={inputClass}
                >
                  <option value="">any</option>
                  {OUTCOMES.map((o) => (
                    <option key={o} value={o}>
                      {o}
                    </option>
                  ))}
                </select>
              </label>
              <div className="flex items-end">
                <Button type="submit" tone="primary">
                  Filter
                </Button>
              </div>
            </form>
            <div className="mt-4">
              <Verify />
            </div>
          </Card>
          <section aria-label="Audit rows">
            <ErrorNote error={log.error} />
            {log.isPending && <p className="text-sm text-stone-500">Loading the audit log…</p>}
            {log.data && items.length === 0 && <p className="text-sm text-stone-500">No rows match.</p>}
            {items.length > 0 && (
              <ul aria-label="Audit log" className={listClass}>
                {items.map((e) => (
                  <Row key={e.seq} e={e} />
                ))}
              </ul>
            )}
            <LoadMore query={log} />
          </section>
        </>
      )}
    </div>
  );
}
