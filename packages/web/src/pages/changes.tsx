import type { Diff } from "@flotilla/client";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useParams } from "@tanstack/react-router";
import { useState } from "react";
import { api } from "../api.ts";
import { LandPanel } from "../session/land-panel.tsx";
import { Button, ErrorNote } from "../ui.tsx";
import { useSessionContext } from "./session.tsx";

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

type Cell = { n: number; text: string; kind: "ctx" | "add" | "del" } | null;

/**
 * A file's patch as rows of (old, new) for the side-by-side view: context on both sides, and each
 * run of deletions paired line by line with the run of additions that follows it.
 */
function sideBySide(lines: string[]): ({ hunk: string } | { left: Cell; right: Cell })[] {
  const out: ({ hunk: string } | { left: Cell; right: Cell })[] = [];
  let oldN = 0;
  let newN = 0;
  let dels: Cell[] = [];
  let adds: Cell[] = [];
  const flush = () => {
    for (let i = 0; i < Math.max(dels.length, adds.length); i++)
      out.push({ left: dels[i] ?? null, right: adds[i] ?? null });
    dels = [];
    adds = [];
  };
  for (const l of lines) {
    const h = /^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@/.exec(l);
    if (h) {
      flush();
      oldN = Number(h[1]);
      newN = Number(h[2]);
      out.push({ hunk: l });
    } else if (l.startsWith("+++") || l.startsWith("---") || l.startsWith("diff ") || l.startsWith("index "))
      continue;
    else if (l.startsWith("-")) dels.push({ n: oldN++, text: l.slice(1), kind: "del" });
    else if (l.startsWith("+")) adds.push({ n: newN++, text: l.slice(1), kind: "add" });
    else if (l.startsWith(" ")) {
      flush();
      out.push({
        left: { n: oldN++, text: l.slice(1), kind: "ctx" },
        right: { n: newN++, text: l.slice(1), kind: "ctx" },
      });
    }
  }
  flush();
  return out;
}

const CELL = {
  ctx: "",
  add: "bg-emerald-50 text-emerald-900 dark:bg-emerald-950/50 dark:text-emerald-200",
  del: "bg-red-50 text-red-900 dark:bg-red-950/50 dark:text-red-200",
};

function SplitDiff({ lines }: { lines: string[] }) {
  const half = (c: Cell) =>
    c ? (
      <>
        <td
          className={`w-10 select-none border-r border-stone-200 px-2 text-right text-stone-400 dark:border-stone-800 ${CELL[c.kind]}`}
        >
          {c.n}
        </td>
        <td className={`whitespace-pre px-2 ${CELL[c.kind]}`}>{c.text || " "}</td>
      </>
    ) : (
      <>
        <td className="w-10 border-r border-stone-200 bg-stone-50 dark:border-stone-800 dark:bg-stone-900" />
        <td className="bg-stone-50 dark:bg-stone-900" />
      </>
    );
  return (
    <div className="overflow-x-auto">
      <table
        data-testid="split-diff"
        className="w-full table-fixed border-collapse bg-white font-mono text-xs leading-5 dark:bg-stone-950"
      >
        <colgroup>
          <col className="w-10" />
          <col />
          <col className="w-10" />
          <col />
        </colgroup>
        <tbody>
          {sideBySide(lines).map((r, i) =>
            "hunk" in r ? (
              // biome-ignore lint/suspicious/noArrayIndexKey: rows of a fixed patch never reorder
              <tr key={i}>
                <td colSpan={4} className="bg-sky-50 px-2 text-sky-800 dark:bg-sky-950/40 dark:text-sky-300">
                  {r.hunk}
                </td>
              </tr>
            ) : (
              // biome-ignore lint/suspicious/noArrayIndexKey: rows of a fixed patch never reorder
              <tr key={i} className="align-top">
                {half(r.left)}
                {half(r.right)}
              </tr>
            ),
          )}
        </tbody>
      </table>
    </div>
  );
}

type ChangedFile = Diff["files"][number];
type TreeRow =
  | { kind: "dir"; path: string; name: string; depth: number }
  | { kind: "file"; file: ChangedFile; name: string; depth: number };

/**
 * The changed files as a tree: each directory once, above its files, indented by depth. A chain of
 * directories holding nothing but one directory is shown as one row (`src/core/`), as editors do.
 */
function treeRows(files: ChangedFile[]): TreeRow[] {
  type Node = { dirs: Map<string, Node>; files: ChangedFile[] };
  const root: Node = { dirs: new Map(), files: [] };
  for (const f of files) {
    const parts = f.path.split("/");
    let n = root;
    for (const p of parts.slice(0, -1)) {
      let next = n.dirs.get(p);
      if (!next) {
        next = { dirs: new Map(), files: [] };
        n.dirs.set(p, next);
      }
      n = next;
    }
    n.files.push(f);
  }
  const out: TreeRow[] = [];
  const walk = (n: Node, prefix: string, depth: number) => {
    for (const [name, child] of [...n.dirs].sort(([a], [b]) => a.localeCompare(b))) {
      let label = name;
      let node = child;
      while (node.files.length === 0 && node.dirs.size === 1) {
        const [k, v] = [...node.dirs][0]!;
        label = `${label}/${k}`;
        node = v;
      }
      const path = `${prefix}${label}`;
      out.push({ kind: "dir", path, name: label, depth });
      walk(node, `${path}/`, depth + 1);
    }
    for (const f of [...n.files].sort((a, b) => a.path.localeCompare(b.path)))
      out.push({ kind: "file", file: f, name: f.path.slice(prefix.length), depth });
  };
  walk(root, "", 0);
  return out;
}

const STATUS_MARK = { added: "A", modified: "M", deleted: "D", renamed: "R" } as const;

export function ChangesPage() {
  const { id } = useParams({ from: "/s/$id" });
  const ctx = useSessionContext();
  const status = ctx.transcript.status ?? ctx.session?.status;
  return (
    <div className="grid grid-cols-[minmax(0,1fr)] gap-4">
      <LandPanel sessionId={id} status={status} />
      <DiffSection id={id} />
    </div>
  );
}

function DiffSection({ id }: { id: string }) {
  const qc = useQueryClient();
  const diff = useQuery({ queryKey: ["diff", id], queryFn: () => api.sessions.diff(id) });
  // Side by side where there is room for it; one column on a phone.
  const [split, setSplit] = useState(() => window.matchMedia("(min-width: 1024px)").matches);
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
        <fieldset
          aria-label="Diff layout"
          className="ml-auto flex overflow-hidden rounded-md border border-stone-300 text-xs dark:border-stone-700"
        >
          {(["Split", "Unified"] as const).map((label) => (
            <button
              key={label}
              type="button"
              aria-pressed={(label === "Split") === split}
              onClick={() => setSplit(label === "Split")}
              className="px-2 py-1 aria-pressed:bg-stone-900 aria-pressed:text-white dark:aria-pressed:bg-stone-100 dark:aria-pressed:text-stone-900"
            >
              {label}
            </button>
          ))}
        </fieldset>
        <Button
          onClick={() => {
            void diff.refetch();
            void qc.invalidateQueries({ queryKey: ["branch", id] });
          }}
          disabled={diff.isFetching}
        >
          Refresh
        </Button>
      </div>
      {d.files.length === 0 && <p className="text-sm text-stone-500">No changes yet.</p>}
      {d.files.length > 0 && (
        <ul
          data-testid="changed-files"
          className="divide-y divide-stone-200 rounded-lg border border-stone-200 bg-white text-sm dark:divide-stone-800 dark:border-stone-800 dark:bg-stone-900"
        >
          {treeRows(d.files).map((r) =>
            r.kind === "dir" ? (
              <li
                key={`dir:${r.path}`}
                className="px-3 py-1.5 font-mono text-xs text-stone-500"
                style={{ paddingLeft: `${0.75 + r.depth}rem` }}
              >
                {r.name}/
              </li>
            ) : (
              <li key={r.file.path}>
                <a
                  href={`#file-${encodeURIComponent(r.file.path)}`}
                  title={r.file.path}
                  className="flex items-center gap-3 px-3 py-2 hover:bg-stone-50 dark:hover:bg-stone-800/50"
                  style={{ paddingLeft: `${0.75 + r.depth}rem` }}
                >
                  <span className="w-4 font-mono text-xs text-stone-500" title={r.file.status}>
                    {STATUS_MARK[r.file.status]}
                  </span>
                  <span className="min-w-0 flex-1 truncate font-mono">{r.name}</span>
                  <span className="font-mono text-xs text-emerald-700 dark:text-emerald-400">
                    +{r.file.additions}
                  </span>
                  <span className="font-mono text-xs text-red-700 dark:text-red-400">
                    −{r.file.deletions}
                  </span>
                </a>
              </li>
            ),
          )}
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
          ) : split ? (
            <SplitDiff lines={chunks.get(f.path) ?? []} />
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
