import type { PermissionRequest, SessionEvent } from "@flotilla/client";
import { duration, firstLine, truncate } from "./format.ts";
import type { Style } from "./style.ts";

type Of<T extends SessionEvent["type"]> = Extract<SessionEvent, { type: T }>["data"];
type Ask = Pick<Of<"permission.asked">, "permission" | "patterns" | "metadata"> & { always?: string[] };

export interface Output {
  write(s: string): unknown;
  columns?: number;
}

export interface RendererOptions {
  out: Output;
  style: Style;
  sessionId: string;
  /** run / send --wait end with their own summary, so the turn.finished line is left to it. */
  summaryOwnsFinish?: boolean;
  /** Someone is watching live and nobody prompts: say how to answer a permission ask. */
  askHint?: boolean;
  /** `flotilla logs`: each turn's first and last lines carry their event's seq (dim `#N`), the
   * number `--after` takes. */
  seq?: boolean;
  /** The prompter shows asks itself, right above its question. */
  promptsAsks?: boolean;
}

const DIFF_LINES = 12;

/** The lines that describe a permission ask: what is asked, for what, and a short view of the change. */
export function askLines(a: Ask, s: Style, width = 100): string[] {
  const lines = [`${s.yellow("?")} ${s.bold(a.permission)}  ${truncate(a.patterns.join(", "), width - 8)}`];
  const command = typeof a.metadata.command === "string" ? a.metadata.command : undefined;
  if (command && !a.patterns.includes(command))
    lines.push(`    ${s.dim("$")} ${truncate(command, width - 8)}`);
  if (typeof a.metadata.diff === "string") {
    // Keep the hunks; the file header names absolute workspace paths that say nothing new.
    const hunk = a.metadata.diff
      .split("\n")
      .filter((l) => /^(@@|[+ -])/.test(l) && !/^(\+\+\+|---) /.test(l) && l !== "");
    for (const l of hunk.slice(0, DIFF_LINES)) lines.push(`    ${diffColor(truncate(l, width - 6), s)}`);
    if (hunk.length > DIFF_LINES) lines.push(s.dim(`    … ${hunk.length - DIFF_LINES} more lines`));
  }
  if (a.always?.length) lines.push(s.dim(`    "always" would allow: ${a.always.join(", ")}`));
  return lines;
}

export function pendingLines(p: PermissionRequest, s: Style, width?: number): string[] {
  return [...askLines(p, s, width), s.dim(`    request ${p.id}, asked ${p.askedAt}`)];
}

export function diffColor(line: string, s: Style): string {
  if (line.startsWith("+++") || line.startsWith("---")) return s.bold(line);
  if (line.startsWith("+")) return s.green(line);
  if (line.startsWith("-")) return s.red(line);
  if (line.startsWith("@@")) return s.cyan(line);
  return line;
}

/**
 * Turns a session's events into calm terminal output: streamed text as it arrives, one line per
 * finished tool call, short notes for status changes. Text and line items are kept apart by a
 * blank line; output can be held (while a prompt owns the terminal) and is then replayed in order.
 */
export class Renderer {
  private atLineStart = true;
  private block: "none" | "text" | "lines" = "none";
  private readonly shown = new Map<string, number>();
  private openPart: string | undefined;
  private held: string[] | undefined;
  private lastType: string | undefined;

  constructor(private readonly o: RendererOptions) {}

  private get width(): number {
    return Math.max(40, this.o.out.columns ?? 100);
  }

  private emit(s: string): void {
    if (!s) return;
    if (this.held) this.held.push(s);
    else this.o.out.write(s);
    this.atLineStart = s.endsWith("\n");
  }

  private endLine(): void {
    if (!this.atLineStart) this.emit("\n");
    this.openPart = undefined;
  }

  /** One line item (tool, note, ask), separated from streamed text by a blank line. */
  line(text: string): void {
    this.endLine();
    if (this.block === "text") this.emit("\n");
    this.block = "lines";
    this.emit(`${text}\n`);
  }

  note(text: string): void {
    this.line(this.o.style.dim(`  · ${text}`));
  }

  private text(partId: string, chunk: string, reasoning: boolean): void {
    if (!chunk) return;
    if (this.openPart !== partId) this.endLine();
    if (this.block === "lines") this.emit("\n");
    this.block = "text";
    this.openPart = partId;
    this.shown.set(partId, (this.shown.get(partId) ?? 0) + chunk.length);
    this.emit(reasoning ? this.o.style.dim(chunk) : chunk);
  }

  private completed(partId: string, text: string, reasoning: boolean): void {
    // Deltas can be missing (a part caught mid-stream after a reconnect): show what was not seen.
    const seen = this.shown.get(partId) ?? 0;
    if (text.length > seen) this.text(partId, text.slice(seen), reasoning);
    if (this.openPart === partId) this.endLine();
  }

  /** While a prompt owns the terminal, output is kept and replayed after it. */
  hold(): void {
    this.endLine();
    this.held ??= [];
  }

  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const s of held) this.o.out.write(s);
  }

  /** Writes past any hold (the prompter's own lines). */
  direct(lines: string[]): void {
    this.o.out.write(lines.map((l) => `${l}\n`).join(""));
  }

  /** Closes an open text line so that what follows starts on its own line. */
  finish(): void {
    this.endLine();
  }

  event(e: SessionEvent): void {
    const s = this.o.style;
    const prev = this.lastType;
    this.lastType = e.type;
    switch (e.type) {
      case "text.delta":
        this.text(e.data.partId, e.data.delta, false);
        return;
      case "reasoning.delta":
        this.text(e.data.partId, e.data.delta, true);
        return;
      case "text.completed":
        this.completed(e.data.partId, e.data.text, false);
        return;
      case "reasoning.completed":
        this.completed(e.data.partId, e.data.text, true);
        return;
      case "turn.started": {
        this.endLine();
        if (this.block !== "none") this.emit("\n");
        this.block = "lines";
        const at = this.o.seq ? s.dim(` #${e.seq}`) : "";
        this.emit(
          `${s.bold("›")} ${s.bold(truncate(firstLine(e.data.prompt), this.width - 4 - (this.o.seq ? String(e.seq).length + 2 : 0)))}${at}\n`,
        );
        return;
      }
      case "tool.updated":
        this.tool(e.data);
        return;
      case "file.edited":
        this.line(s.dim(`  ✎ ${e.data.path}`));
        return;
      case "permission.asked": {
        if (this.o.promptsAsks) return;
        for (const l of askLines(e.data, s, this.width)) this.line(`  ${l}`);
        if (this.o.askHint)
          this.line(
            s.dim(`    answer: flotilla approve ${this.o.sessionId}  |  flotilla reject ${this.o.sessionId}`),
          );
        return;
      }
      case "permission.replied": {
        const r = e.data;
        if (r.reply === "reject")
          this.line(`  ${s.red("✗")} rejected${r.message ? `: ${s.italic(r.message)}` : ""}`);
        else this.line(`  ${s.green("✓")} allowed ${r.reply}`);
        return;
      }
      case "session.status":
        this.status(e.data, prev);
        return;
      case "harness.state": {
        const d = e.data;
        if (d.state === "lost") {
          this.line(s.yellow(`  ! harness lost${d.reason ? `: ${d.reason}` : ""}`));
          return;
        }
        const what = { starting: "starting harness…", ready: "harness ready", adopted: "harness adopted" }[
          d.state as string
        ];
        this.note(what ?? `harness ${d.state}${d.reason ? ` (${d.reason})` : ""}`);
        return;
      }
      case "turn.finished":
        if (this.o.summaryOwnsFinish) {
          this.endLine();
          return;
        }
        this.line(`  ${finishLine(e.data, s)}${this.o.seq ? s.dim(` #${e.seq}`) : ""}`);
        return;
      case "todo.updated": {
        const todos = e.data.todos;
        const done = todos.filter((t) => t.status === "completed").length;
        const now = todos.find((t) => t.status === "in_progress");
        this.note(`todo ${done}/${todos.length} done${now ? ` · now: ${now.content}` : ""}`);
        return;
      }
      case "provider.retry":
        this.line(s.yellow(`  ! provider retry ${e.data.attempt}: ${firstLine(e.data.message)}`));
        return;
      case "error":
        // An abort reports itself as an error too; turn.finished already says "aborted".
        if (e.data.name === "MessageAbortedError") return;
        this.line(`  ${s.red("✗")} ${e.data.name}: ${firstLine(e.data.message)}`);
        return;
      case "git":
        // Work that landed: committed on the branch, merged or patched into the user's repository.
        this.line(s.dim(`  ● ${e.data.summary}`));
        return;
      case "budget.warning":
        this.line(
          s.yellow(`  ! budget ${e.data.budget}: ${firstLine(e.data.message)} (warn mode: going on)`),
        );
        return;
      case "usage":
        return;
    }
  }

  private tool(d: Of<"tool.updated">): void {
    if (d.status !== "completed" && d.status !== "error") return;
    const s = this.o.style;
    const room = this.width - 5 - d.tool.length;
    const title = truncate(firstLine(d.title ?? inputSummary(d.input)), room);
    if (d.status === "completed") {
      this.line(`  ${s.green("✓")} ${s.cyan(d.tool)} ${title}`);
      return;
    }
    const err = truncate(firstLine(d.error ?? "failed"), Math.max(20, room - title.length - 2));
    this.line(`  ${s.red("✗")} ${s.cyan(d.tool)}${title ? ` ${title}` : ""}: ${s.red(err)}`);
  }

  private status(d: Of<"session.status">, prev: string | undefined): void {
    const s = this.o.style;
    switch (d.status) {
      case "queued":
        this.note(`queued: ${d.reason ?? "waiting for a harness"}`);
        return;
      case "provisioning":
        this.note("provisioning workspace…");
        return;
      case "failed":
        // run and send --wait say it in their summary, with nothing after it to push it away.
        if (this.o.summaryOwnsFinish) return;
        this.line(`  ${s.red("✗")} session failed: ${d.error?.message ?? d.reason ?? "unknown error"}`);
        return;
      case "interrupted":
        if (prev === "turn.finished") return;
        this.line(s.yellow(`  ! interrupted${d.reason ? `: ${d.reason}` : ""}`));
        return;
      case "deleted":
        this.note("session deleted");
        return;
      default:
        if (d.reason) this.note(d.reason);
    }
  }
}

export function finishLine(d: Of<"turn.finished">, s: Style): string {
  const took = d.durationMs !== undefined ? duration(d.durationMs) : undefined;
  switch (d.outcome) {
    case "success":
      return `${s.green("✓")} done${took ? ` in ${took}` : ""}`;
    case "aborted":
      return `${s.yellow("■")} aborted${took ? ` after ${took}` : ""}`;
    case "interrupted":
      return `${s.yellow("!")} interrupted${d.error ? `: ${d.error.message}` : ""}`;
    default:
      return `${s.red("✗")} failed${took ? ` after ${took}` : ""}${d.error ? `: ${firstLine(d.error.message)}` : ""}`;
  }
}

/** A tool's input in a few words, when the harness gave no title. */
function inputSummary(input: unknown): string {
  if (!input || typeof input !== "object") return "";
  const o = input as Record<string, unknown>;
  for (const k of ["filePath", "path", "command", "pattern", "url", "description"])
    if (typeof o[k] === "string") return o[k] as string;
  return "";
}
