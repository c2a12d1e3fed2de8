import type { Row } from "@flotilla/contracts/transcript";
import { InlineDiff, linesOfEdit } from "./diff-view.tsx";

type ToolRow = Extract<Row, { kind: "tool" }>;

const DOT: Record<string, string> = {
  pending: "bg-stone-400",
  running: "bg-sky-500 animate-pulse",
  waiting: "bg-amber-500 animate-pulse",
  completed: "bg-emerald-500",
  error: "bg-red-500",
  rejected: "bg-red-500",
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

/** Where a call stands, as a person reads it: a rejected call is not an error of the agent's. */
function stateOf(row: ToolRow, waiting: boolean): keyof typeof DOT {
  if (row.rejected && row.status !== "completed") return "rejected";
  if (waiting && (row.status === "pending" || row.status === "running")) return "waiting";
  return row.status;
}

const STATE_TEXT: Record<string, string> = { waiting: "waiting for permission" };

/**
 * A tool call: one line (status, tool, what it touched) that opens to its input and output.
 * File edits show their diff inline without opening; one that was rejected or failed is shown
 * struck through, as a change that did not happen. Native <details> keeps it keyboard-operable.
 */
export function ToolCall({ row, waiting = false }: { row: ToolRow; waiting?: boolean }) {
  const lines = editLines(row);
  const rest = { ...input(row) };
  if (lines) for (const k of ["oldString", "newString", "content"]) delete rest[k];
  const hasInput = Object.keys(rest).length > 0;
  const state = stateOf(row, waiting);
  const target = summary(row);
  // The line names what the call touched; an error the agent hit is worth the line instead (its
  // first line: the rest is in the body), a rejection is said by the state and explained below.
  const line = state === "error" && row.error ? (row.error.split("\n")[0] ?? "") : target;
  const notApplied = state === "rejected" || state === "error";
  return (
    <div data-testid="tool-row" data-state={state} className="grid grid-cols-[minmax(0,1fr)] gap-1.5">
      <details className="group min-w-0 rounded-md border border-stone-200 bg-white dark:border-stone-800 dark:bg-stone-900">
        <summary className="flex min-w-0 cursor-pointer list-none items-center gap-2 px-3 py-1.5 font-mono text-xs [&::-webkit-details-marker]:hidden">
          <span className={`size-2 shrink-0 rounded-full ${DOT[state]}`} />
          <span className="shrink-0 font-semibold">{row.tool}</span>
          <span className="min-w-0 flex-1 truncate text-stone-500" title={line}>
            {line}
          </span>
          <span
            data-testid="tool-state"
            className={`shrink-0 ${
              state === "rejected"
                ? "font-medium text-red-700 dark:text-red-300"
                : state === "waiting"
                  ? "font-medium text-amber-700 dark:text-amber-300"
                  : "text-stone-400"
            }`}
          >
            {STATE_TEXT[state] ?? state}
          </span>
          <span aria-hidden className="shrink-0 text-stone-400 transition group-open:rotate-90">
            ›
          </span>
        </summary>
        <div className="grid grid-cols-[minmax(0,1fr)] gap-2 border-t border-stone-200 p-3 dark:border-stone-800">
          {hasInput && (
            <section>
              <h4 className="mb-1 text-[11px] font-medium uppercase tracking-wide text-stone-500">Input</h4>
              <pre className="hljs-block whitespace-pre-wrap break-all">{JSON.stringify(rest, null, 2)}</pre>
            </section>
          )}
          {(row.output ?? row.error) && (
            <section>
              <h4 className="mb-1 text-[11px] font-medium uppercase tracking-wide text-stone-500">
                {state === "rejected" ? "Rejected" : row.error ? "Error" : "Output"}
              </h4>
              <pre className="hljs-block max-h-96 overflow-auto whitespace-pre-wrap wrap-anywhere">
                {row.error ?? row.output}
              </pre>
            </section>
          )}
          {!hasInput && !row.output && !row.error && (
            <p className="text-xs text-stone-500">No input or output yet.</p>
          )}
        </div>
      </details>
      {lines && lines.length > 0 && (
        <InlineDiff
          lines={lines}
          struck={notApplied}
          note={
            state === "rejected"
              ? "Rejected: not applied"
              : state === "error"
                ? "Failed: not applied"
                : state === "waiting"
                  ? "Proposed: waiting for permission"
                  : undefined
          }
          label={`${state === "rejected" ? "Rejected change" : state === "error" ? "Failed change" : "Change"} to ${target}`}
        />
      )}
    </div>
  );
}
