import type { Catalog } from "@flotilla/client";
import type { SessionStatus } from "@flotilla/contracts/transcript";
import { type ButtonHTMLAttributes, type ReactNode, useEffect, useId, useRef } from "react";

const STATUS_STYLE: Record<SessionStatus, string> = {
  queued: "bg-violet-100 text-violet-800 dark:bg-violet-900/50 dark:text-violet-200",
  provisioning: "bg-sky-100 text-sky-800 dark:bg-sky-900/50 dark:text-sky-200",
  idle: "bg-stone-200 text-stone-700 dark:bg-stone-800 dark:text-stone-300",
  running: "bg-emerald-100 text-emerald-800 dark:bg-emerald-900/50 dark:text-emerald-200",
  waiting_permission: "bg-amber-100 text-amber-900 dark:bg-amber-900/50 dark:text-amber-200",
  interrupted: "bg-orange-100 text-orange-800 dark:bg-orange-900/50 dark:text-orange-200",
  failed: "bg-red-100 text-red-800 dark:bg-red-900/50 dark:text-red-200",
  deleted: "bg-stone-100 text-stone-500 dark:bg-stone-900 dark:text-stone-500",
};

export function StatusBadge({ status }: { status: SessionStatus }) {
  return (
    <span
      data-testid="status"
      className={`inline-flex shrink-0 items-center rounded-full px-2 py-0.5 text-xs font-medium ${STATUS_STYLE[status]}`}
    >
      {status === "waiting_permission" ? "needs approval" : status}
    </span>
  );
}

type Tone = "primary" | "secondary" | "danger";
const TONE: Record<Tone, string> = {
  primary:
    "bg-stone-900 text-white hover:bg-stone-700 dark:bg-stone-100 dark:text-stone-900 dark:hover:bg-white",
  secondary:
    "border border-stone-300 bg-white text-stone-800 hover:bg-stone-100 dark:border-stone-700 dark:bg-stone-900 dark:text-stone-100 dark:hover:bg-stone-800",
  danger:
    "border border-red-300 bg-white text-red-700 hover:bg-red-50 dark:border-red-800 dark:bg-stone-900 dark:text-red-300",
};

export function Button({
  tone = "secondary",
  className = "",
  ...rest
}: ButtonHTMLAttributes<HTMLButtonElement> & { tone?: Tone }) {
  return (
    <button
      type="button"
      className={`inline-flex items-center justify-center gap-1 rounded-md px-3 py-1.5 text-sm font-medium transition disabled:cursor-not-allowed disabled:opacity-50 ${TONE[tone]} ${className}`}
      {...rest}
    />
  );
}

export function Card({ children, className = "" }: { children: ReactNode; className?: string }) {
  return (
    <div
      className={`rounded-lg border border-stone-200 bg-white p-4 dark:border-stone-800 dark:bg-stone-900 ${className}`}
    >
      {children}
    </div>
  );
}

export function ErrorNote({ error }: { error: unknown }) {
  if (!error) return null;
  return (
    <p
      role="alert"
      className="rounded-md bg-red-50 px-3 py-2 text-sm text-red-800 dark:bg-red-950 dark:text-red-200"
    >
      {error instanceof Error ? error.message : String(error)}
    </p>
  );
}

export const inputClass =
  "w-full rounded-md border border-stone-300 bg-white px-3 py-2 text-sm shadow-sm outline-none focus:border-stone-500 focus:ring-2 focus:ring-stone-200 dark:border-stone-700 dark:bg-stone-950 dark:focus:ring-stone-800";

const int = new Intl.NumberFormat("en-US");
/** A count with thousands separators (the pages' numbers, which tests read back as numbers). */
export const formatCount = (n: number) => int.format(Math.round(n));
/** Dollars: cents, or four decimals under a cent (a single call often costs less). */
export function formatCost(usd: number): string {
  if (usd === 0) return "$0.00";
  if (usd < 0.01) return `$${usd.toFixed(4)}`;
  return `$${usd.toFixed(2)}`;
}

export function timeAgo(iso: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return new Date(iso).toLocaleDateString();
}

/** The options of a model picker: every model the server offers, demo ones marked as such. */
export function ModelOptions({ models }: { models: Catalog["models"] | undefined }) {
  // The server answers within seconds even when a harness is slow; until then, say so.
  if (!models)
    return (
      <option value="" disabled>
        Loading models…
      </option>
    );
  return (
    <>
      {models?.map((m) => (
        <option key={m.id} value={m.id}>
          {m.name} ({m.id}){m.demo ? " — demo, not an LLM" : ""}
        </option>
      ))}
    </>
  );
}

/** The next page of a list, for TanStack Query's infinite queries. */
export function LoadMore({
  query,
}: {
  query: { hasNextPage: boolean; isFetchingNextPage: boolean; fetchNextPage: () => unknown };
}) {
  if (!query.hasNextPage) return null;
  return (
    <div className="mt-3 flex justify-center">
      <Button onClick={() => query.fetchNextPage()} disabled={query.isFetchingNextPage}>
        {query.isFetchingNextPage ? "Loading…" : "Load more"}
      </Button>
    </div>
  );
}

/**
 * A modal dialog on the native <dialog>: the page behind is inert, Tab stays inside, Escape closes.
 * Its content stays mounted while closed, so what was typed survives closing it by mistake. On
 * opening, the element marked `data-autofocus` takes the focus (React's autoFocus runs on mount,
 * not on showModal).
 */
export function Dialog({
  open,
  onClose,
  title,
  description,
  children,
}: {
  open: boolean;
  onClose: () => void;
  title: string;
  description?: ReactNode;
  children: ReactNode;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) {
      d.showModal();
      d.querySelector<HTMLElement>("[data-autofocus]")?.focus();
    } else if (!open && d.open) d.close();
  }, [open]);
  return (
    <dialog
      ref={ref}
      aria-labelledby={titleId}
      onClose={onClose}
      className="m-auto max-h-[calc(100dvh-2rem)] w-[calc(100%-2rem)] max-w-2xl overflow-y-auto rounded-lg border border-stone-200 bg-white p-0 text-stone-900 shadow-xl backdrop:bg-stone-950/40 dark:border-stone-800 dark:bg-stone-900 dark:text-stone-100"
    >
      <div className="grid gap-1 p-4 sm:p-5">
        <div className="flex items-start gap-3">
          <h2 id={titleId} className="mr-auto font-semibold">
            {title}
          </h2>
          <button
            type="button"
            onClick={onClose}
            aria-label="Close"
            className="-m-1 rounded p-1 text-stone-500 hover:bg-stone-100 hover:text-stone-900 dark:hover:bg-stone-800 dark:hover:text-white"
          >
            <span aria-hidden>✕</span>
          </button>
        </div>
        {description && <div className="text-xs text-stone-500">{description}</div>}
        {children}
      </div>
    </dialog>
  );
}
