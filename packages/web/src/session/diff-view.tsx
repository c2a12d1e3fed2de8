import { structuredPatch } from "diff";

export interface DiffLine {
  kind: "add" | "del" | "ctx" | "hunk";
  text: string;
}

/** A unified diff's body lines; file headers (Index, ---, +++) are dropped: the caller names the file. */
export function linesOfPatch(patch: string): DiffLine[] {
  const out: DiffLine[] = [];
  for (const l of patch.split("\n")) {
    if (l.startsWith("Index: ") || l.startsWith("====") || l.startsWith("--- ") || l.startsWith("+++ "))
      continue;
    if (l.startsWith("\\ No newline")) continue;
    if (l.startsWith("@@")) out.push({ kind: "hunk", text: l });
    else if (l.startsWith("+")) out.push({ kind: "add", text: l.slice(1) });
    else if (l.startsWith("-")) out.push({ kind: "del", text: l.slice(1) });
    else if (l.startsWith(" ")) out.push({ kind: "ctx", text: l.slice(1) });
  }
  return out;
}

/** The lines an edit tool call changes, with three lines of context (jsdiff). */
export function linesOfEdit(before: string, after: string): DiffLine[] {
  const p = structuredPatch("a", "b", before, after, "", "", { context: 3 });
  const out: DiffLine[] = [];
  for (const h of p.hunks) {
    if (p.hunks.length > 1)
      out.push({ kind: "hunk", text: `@@ -${h.oldStart},${h.oldLines} +${h.newStart},${h.newLines} @@` });
    for (const l of h.lines) {
      if (l.startsWith("\\")) continue;
      out.push({ kind: l[0] === "+" ? "add" : l[0] === "-" ? "del" : "ctx", text: l.slice(1) });
    }
  }
  return out;
}

const STYLE: Record<DiffLine["kind"], string> = {
  add: "bg-emerald-50 text-emerald-900 dark:bg-emerald-950/50 dark:text-emerald-200",
  del: "bg-red-50 text-red-900 dark:bg-red-950/50 dark:text-red-200",
  ctx: "text-stone-600 dark:text-stone-400",
  hunk: "bg-sky-50 text-sky-800 dark:bg-sky-950/40 dark:text-sky-300",
};
const SIGN: Record<DiffLine["kind"], string> = { add: "+", del: "-", ctx: " ", hunk: "" };

/** A change that did not happen: no red and green, struck through, so it does not read as applied. */
const STRUCK: Record<DiffLine["kind"], string> = {
  add: "text-stone-500 line-through decoration-stone-400 dark:text-stone-500",
  del: "text-stone-500 line-through decoration-stone-400 dark:text-stone-500",
  ctx: "text-stone-400 dark:text-stone-600",
  hunk: "text-stone-400 dark:text-stone-600",
};

/**
 * An inline unified diff. Long diffs are cut at `max` lines with a count of the rest. `note` heads
 * it (what became of the change); `struck` shows a change that was not applied.
 */
export function InlineDiff({
  lines,
  max = 400,
  label,
  note,
  struck = false,
}: {
  lines: DiffLine[];
  max?: number;
  label?: string;
  note?: string;
  struck?: boolean;
}) {
  const shown = lines.slice(0, max);
  return (
    <section
      aria-label={label ?? "Diff"}
      data-struck={struck || undefined}
      className={`overflow-x-auto rounded-md border font-mono text-xs leading-5 ${
        struck
          ? "border-dashed border-stone-300 bg-stone-50 dark:border-stone-700 dark:bg-stone-900/50"
          : "border-stone-200 bg-white dark:border-stone-800 dark:bg-stone-950"
      }`}
    >
      {note && (
        <div
          className={`border-b px-2 py-0.5 font-sans text-[11px] font-medium uppercase tracking-wide ${
            struck
              ? "border-dashed border-stone-300 text-red-700 dark:border-stone-700 dark:text-red-300"
              : "border-stone-200 text-amber-700 dark:border-stone-800 dark:text-amber-300"
          }`}
        >
          {note}
        </div>
      )}
      {shown.map((l, i) => (
        // biome-ignore lint/suspicious/noArrayIndexKey: a diff's lines have no identity beyond their place
        <div key={i} className={`whitespace-pre px-2 ${(struck ? STRUCK : STYLE)[l.kind]}`}>
          {SIGN[l.kind]}
          {l.text}
        </div>
      ))}
      {lines.length > max && (
        <div className="px-2 py-1 text-stone-500">… {lines.length - max} more lines</div>
      )}
    </section>
  );
}
