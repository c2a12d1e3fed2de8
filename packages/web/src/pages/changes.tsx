import { useQuery } from "@tanstack/react-query";
import { useParams } from "@tanstack/react-router";
import { api } from "../api.ts";
import { Button, ErrorNote } from "../ui.tsx";

/** Splits a unified patch into one chunk per file, keyed by its new (or, if deleted, old) path. */
function splitPatch(patch: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of patch.replace(/\n$/, "").split("\n")) {
    const m = /^diff --git a\/(.+?) b\/(.+)$/.exec(line);
    if (m) {
      current = [];
      out.set(m[2]!, current);
    }
    current?.push(line);
  }
  return out;
}

function lineClass(l: string): string {
  if (l.startsWith("+++") || l.startsWith("---") || l.startsWith("diff ") || l.startsWith("index "))
    return "text-stone-500";
  if (l.startsWith("+")) return "bg-emerald-50 text-emerald-900 dark:bg-emerald-950/50 dark:text-emerald-200";
  if (l.startsWith("-")) return "bg-red-50 text-red-900 dark:bg-red-950/50 dark:text-red-200";
  if (l.startsWith("@@")) return "bg-sky-50 text-sky-800 dark:bg-sky-950/40 dark:text-sky-300";
  return "";
}

const STATUS_MARK = { added: "A", modified: "M", deleted: "D", renamed: "R" } as const;

export function ChangesPage() {
  const { id } = useParams({ from: "/s/$id" });
  const diff = useQuery({ queryKey: ["diff", id], queryFn: () => api.sessions.diff(id) });
  if (diff.error) return <ErrorNote error={diff.error} />;
  if (!diff.data) return <p className="text-sm text-stone-500">Loading changes…</p>;
  const d = diff.data;
  const chunks = splitPatch(d.patch);
  return (
    <div className="grid grid-cols-[minmax(0,1fr)] gap-4">
      <div className="flex items-center gap-3 text-sm">
        <span>
          {d.files.length} file{d.files.length === 1 ? "" : "s"} changed,{" "}
          <span className="text-emerald-700 dark:text-emerald-400">+{d.additions}</span>{" "}
          <span className="text-red-700 dark:text-red-400">−{d.deletions}</span>
        </span>
        <span className="hidden font-mono text-xs text-stone-500 sm:inline">
          against {d.baseCommit.slice(0, 10)}
        </span>
        <Button className="ml-auto" onClick={() => diff.refetch()} disabled={diff.isFetching}>
          Refresh
        </Button>
      </div>
      {d.files.length === 0 && <p className="text-sm text-stone-500">No changes yet.</p>}
      {d.files.length > 0 && (
        <ul
          data-testid="changed-files"
          className="divide-y divide-stone-200 rounded-lg border border-stone-200 bg-white text-sm dark:divide-stone-800 dark:border-stone-800 dark:bg-stone-900"
        >
          {d.files.map((f) => (
            <li key={f.path}>
              <a
                href={`#file-${encodeURIComponent(f.path)}`}
                className="flex items-center gap-3 px-3 py-2 hover:bg-stone-50 dark:hover:bg-stone-800/50"
              >
                <span className="w-4 font-mono text-xs text-stone-500" title={f.status}>
                  {STATUS_MARK[f.status]}
                </span>
                <span className="min-w-0 flex-1 truncate font-mono">{f.path}</span>
                <span className="font-mono text-xs text-emerald-700 dark:text-emerald-400">
                  +{f.additions}
                </span>
                <span className="font-mono text-xs text-red-700 dark:text-red-400">−{f.deletions}</span>
              </a>
            </li>
          ))}
        </ul>
      )}
      {d.files.map((f) => (
        <section
          key={f.path}
          id={`file-${encodeURIComponent(f.path)}`}
          className="overflow-hidden rounded-lg border border-stone-200 dark:border-stone-800"
        >
          <h3 className="border-b border-stone-200 bg-stone-100 px-3 py-2 font-mono text-xs font-semibold dark:border-stone-800 dark:bg-stone-900">
            {f.path}
          </h3>
          {f.binary ? (
            <p className="px-3 py-2 text-xs text-stone-500">Binary file</p>
          ) : (
            <pre className="overflow-x-auto bg-white py-1 font-mono text-xs leading-5 dark:bg-stone-950">
              {(chunks.get(f.path) ?? []).map((l, i) => (
                // biome-ignore lint/suspicious/noArrayIndexKey: lines of a fixed patch never reorder
                <div key={i} className={`px-3 ${lineClass(l)}`}>
                  {l || " "}
                </div>
              ))}
            </pre>
          )}
        </section>
      ))}
    </div>
  );
}
