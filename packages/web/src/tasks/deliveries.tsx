import type { WebhookDelivery } from "@flotilla/contracts";
import { timeAgo } from "../ui.tsx";
import { DeliveryStatusBadge, formatDuration, listClass, When } from "./task-ui.tsx";

/** Only the origin and path: a webhook URL's query often carries a token. */
function shortUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.host}${u.pathname === "/" ? "" : u.pathname}`;
  } catch {
    return url;
  }
}

function codeClass(code: number | null): string {
  if (code === null) return "text-stone-500";
  if (code >= 200 && code < 300) return "text-emerald-700 dark:text-emerald-400";
  return "text-red-700 dark:text-red-300";
}

function DeliveryRow({ d, showUrl }: { d: WebhookDelivery; showUrl: boolean }) {
  return (
    <li data-testid="delivery">
      <details className="group">
        <summary className="flex cursor-pointer list-none flex-col gap-1 px-4 py-3 hover:bg-stone-50 sm:flex-row sm:items-center sm:gap-4 dark:hover:bg-stone-800/50 [&::-webkit-details-marker]:hidden">
          <span className="flex min-w-0 flex-1 items-center gap-2">
            <span aria-hidden className="text-xs text-stone-400 transition-transform group-open:rotate-90">
              ▸
            </span>
            <DeliveryStatusBadge status={d.status} />
            <span className="min-w-0 truncate font-mono text-sm">{d.event}</span>
            {showUrl && (
              <span className="hidden min-w-0 truncate font-mono text-xs text-stone-500 md:inline">
                → {shortUrl(d.url)}
              </span>
            )}
          </span>
          <span className="flex flex-wrap items-center gap-x-3 gap-y-1 pl-5 text-xs text-stone-500 sm:pl-0">
            <span>
              {d.attempts} attempt{d.attempts === 1 ? "" : "s"}
            </span>
            <span className={`font-mono ${codeClass(d.lastStatusCode)}`} title="Last response code">
              {d.lastStatusCode ?? "—"}
            </span>
            <When iso={d.createdAt}>{timeAgo(d.createdAt)}</When>
          </span>
        </summary>
        <div className="grid gap-3 border-t border-stone-100 bg-stone-50/60 px-4 py-3 text-xs dark:border-stone-800 dark:bg-stone-950/40">
          {d.lastError && (
            <p className="break-words text-red-700 dark:text-red-300">
              <span className="font-medium">Last error:</span> {d.lastError}
            </p>
          )}
          <p className="flex flex-wrap gap-x-4 gap-y-1 text-stone-600 dark:text-stone-400">
            <span className="font-mono">{d.id}</span>
            <span className="break-all font-mono">{d.url}</span>
            {d.deliveredAt && (
              <span>
                delivered <When iso={d.deliveredAt} />
              </span>
            )}
            {d.nextAttemptAt && (
              <span>
                next attempt <When iso={d.nextAttemptAt} />
              </span>
            )}
          </p>
          {d.attemptLog.length > 0 && (
            <table className="w-full max-w-2xl text-left">
              <caption className="sr-only">Attempts</caption>
              <thead className="text-stone-500">
                <tr>
                  <th className="py-1 pr-3 font-medium">#</th>
                  <th className="py-1 pr-3 font-medium">Time</th>
                  <th className="py-1 pr-3 font-medium">Code</th>
                  <th className="py-1 pr-3 font-medium">Took</th>
                  <th className="py-1 font-medium">Error</th>
                </tr>
              </thead>
              <tbody className="font-mono">
                {d.attemptLog.map((a) => (
                  <tr key={a.n} className="align-top">
                    <td className="py-0.5 pr-3">{a.n}</td>
                    <td className="whitespace-nowrap py-0.5 pr-3">
                      <When iso={a.at}>{new Date(a.at).toLocaleTimeString()}</When>
                    </td>
                    <td className={`py-0.5 pr-3 ${codeClass(a.statusCode)}`}>{a.statusCode ?? "—"}</td>
                    <td className="whitespace-nowrap py-0.5 pr-3">{formatDuration(a.durationMs)}</td>
                    <td className="break-all py-0.5">{a.error ?? ""}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <p className="-mb-2 text-stone-500">Payload (the body's data)</p>
          <pre className="max-h-64 overflow-auto rounded-md bg-white p-2 font-mono text-[11px] leading-4 dark:bg-stone-900">
            {JSON.stringify(d.payload, null, 2)}
          </pre>
        </div>
      </details>
    </li>
  );
}

/** A delivery log, newest first; each row opens to its attempts and payload. */
export function DeliveryList({ items, showUrl = false }: { items: WebhookDelivery[]; showUrl?: boolean }) {
  // The API pages newest first; a merged set of pages is re-sorted so that holds across pages too.
  const sorted = [...items].sort(
    (a, b) => b.createdAt.localeCompare(a.createdAt) || b.id.localeCompare(a.id),
  );
  return (
    <ul aria-label="Deliveries" className={listClass}>
      {sorted.map((d) => (
        <DeliveryRow key={d.id} d={d} showUrl={showUrl} />
      ))}
    </ul>
  );
}
