import type { Row } from "../transcript.ts";
import { InlineDiff, linesOfEdit } from "./diff-view.tsx";

type ToolRow = Extract<Row, { kind: "tool" }>;

const DOT: Record<string, string> = {
  pending: "bg-stone-400",
  running: "bg-sky-500 animate-pulse",
  completed: "bg-emerald-500",
  error: "bg-red-500",
};

const str = (v: unknown) => (typeof v === "string" ? v : undefined);
const input = (r: ToolRow) =>
  r.input && typeof r.input === "object" ? (r.input as Record<string, unknown>) : {};

/** What a call did, in a line: the command it ran, the file it touched, or the tool's own title. */
function summary(r: ToolRow): string {
  const i = input(r);
  return str(i.command) ?? str(i.filePath) ?? str(i.path) ?? str(i.pattern) ?? str(i.url) ?? r.title ?? "";
}

/** The change an edit or write makes, when its input says: shown inline, open by default. */
function editLines(r: ToolRow) {
  const i = input(r);
  if (r.tool === "edit" && typeof i.oldString === "string" && typeof i.newString === "string")
    return linesOfEdit(i.oldString, i.newString);
  if (r.tool === "write" && typeof i.content === "string") return linesOfEdit("", i.content);
  return undefined;
}

/**
 * A tool call: one line (status, tool, what it touched) that opens to its input and output.
 * File edits show their diff inline without opening. Native <details> keeps it keyboard-operable.
 */
export function ToolCall({ row }: { row: ToolRow }) {
  const lines = editLines(row);
  const rest = { ...input(row) };
  if (lines) for (const k of ["oldString", "newString", "content"]) delete rest[k];
  const hasInput = Object.keys(rest).length > 0;
  return (
    <div data-testid="tool-row" className="grid gap-1.5">
      <details className="group rounded-md border border-stone-200 bg-white dark:border-stone-800 dark:bg-stone-900">
        <summary className="flex cursor-pointer list-none items-center gap-2 px-3 py-1.5 font-mono text-xs [&::-webkit-details-marker]:hidden">
          <span className={`size-2 shrink-0 rounded-full ${DOT[row.status]}`} />
          <span className="font-semibold">{row.tool}</span>
          <span className="min-w-0 flex-1 truncate text-stone-500">{row.error ?? summary(row)}</span>
          <span className="text-stone-400">{row.status}</span>
          <span aria-hidden className="text-stone-400 transition group-open:rotate-90">
            ›
          </span>
        </summary>
        <div className="grid gap-2 border-t border-stone-200 p-3 dark:border-stone-800">
          {hasInput && (
            <section>
              <h4 className="mb-1 text-[11px] font-medium uppercase tracking-wide text-stone-500">Input</h4>
              <pre className="hljs-block whitespace-pre-wrap break-all">{JSON.stringify(rest, null, 2)}</pre>
            </section>
          )}
          {(row.output ?? row.error) && (
            <section>
              <h4 className="mb-1 text-[11px] font-medium uppercase tracking-wide text-stone-500">
                {row.error ? "Error" : "Output"}
              </h4>
              <pre className="hljs-block max-h-96 overflow-auto whitespace-pre-wrap break-all">
                {row.error ?? row.output}
              </pre>
            </section>
          )}
          {!hasInput && !row.output && !row.error && (
            <p className="text-xs text-stone-500">No input or output yet.</p>
          )}
        </div>
      </details>
      {lines && lines.length > 0 && <InlineDiff lines={lines} label={`Change to ${summary(row)}`} />}
    </div>
  );
}
