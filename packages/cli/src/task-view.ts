import type { Diff } from "@flotilla/client";
import type { Task, TaskState } from "@flotilla/contracts";
import { age, changes, count, duration, firstLine, money, plural, table, truncate } from "./format.ts";
import type { Style } from "./style.ts";

type History = NonNullable<Task["history"]>[number];
type Attempt = NonNullable<Task["attemptList"]>[number];

const VERIFY_TAIL_LINES = 10;

export function taskStateColor(state: string, s: Style): string {
  if (state === "succeeded") return s.green(state);
  if (state === "running") return s.cyan(state);
  if (state === "failed" || state === "dead" || state === "timed_out") return s.red(state);
  if (state === "cancelled") return s.yellow(state);
  return state;
}

function mark(state: TaskState, s: Style): string {
  if (state === "succeeded") return s.green("✓");
  if (state === "cancelled") return s.yellow("■");
  return s.red("✗");
}

/** "+1.2s" after the task was submitted: the lifecycle reads better as offsets than as clock times. */
const offset = (iso: string, from: string) => `+${duration(Math.max(0, Date.parse(iso) - Date.parse(from)))}`;

/** One history entry as a live note while waiting. The final one is left to the result summary. */
export function historyNote(h: History, s: Style): string {
  const reason = h.reason && h.reason !== h.to ? `: ${h.reason}` : "";
  return s.dim(`  · ${h.to}${reason}`);
}

/**
 * The outcome of a finished task: state, attempts, time, the changed files (from the session's diff
 * when given, else the counts the result kept), usage, and the verify command with its output's tail.
 */
export function resultLines(t: Task, s: Style, diff?: Diff, width = 100): string[] {
  const r = t.result;
  const total = t.finishedAt ? Date.parse(t.finishedAt) - Date.parse(t.createdAt) : undefined;
  const lines = [
    [
      `${mark(t.state, s)} ${taskStateColor(t.state, s)}`,
      `${plural(t.attempts, "attempt")} of ${t.maxAttempts}`,
      r ? `ran ${duration(r.durationMs)}` : "",
      total !== undefined ? `${duration(total)} since submitted` : "",
    ]
      .filter(Boolean)
      .join(" · "),
  ];
  if (t.error) lines.push(`  ${s.red(`${t.error.name}: ${firstLine(t.error.message)}`)}`);
  if (!r) return lines;
  if (diff?.files.length) {
    const w = Math.max(...diff.files.map((f) => f.path.length));
    for (const f of diff.files) {
      const change = f.binary ? s.dim("binary") : changes(f.additions, f.deletions, s);
      lines.push(`  ${f.path.padEnd(w)}  ${change}${f.status === "modified" ? "" : `  ${s.dim(f.status)}`}`);
    }
  }
  if (r.files) lines.push(`  ${plural(r.files, "file")} changed  ${changes(r.additions, r.deletions, s)}`);
  else lines.push(s.dim("  no files changed"));
  if (r.commit) lines.push(`  committed ${s.bold(r.commit.slice(0, 7))}`);
  if (r.pullRequest) lines.push(`  pull request #${r.pullRequest.number} ${r.pullRequest.url}`);
  const k = r.tokens;
  lines.push(
    s.dim(
      `  tokens ${count(k.input)} in · ${count(k.output)} out${k.reasoning ? ` · ${count(k.reasoning)} reasoning` : ""}${k.cacheRead ? ` · ${count(k.cacheRead)} cached` : ""} · cost ${money(r.cost)}`,
    ),
  );
  if (r.verify) {
    const v = r.verify;
    const code =
      v.exitCode === 0
        ? s.green("exited 0")
        : s.red(v.exitCode === null ? "did not exit (killed or timed out)" : `exited ${v.exitCode}`);
    lines.push(`  verify ${s.bold(truncate(firstLine(v.command), width - 30))} ${code}`);
    const out = v.output.replace(/\s+$/, "").split("\n");
    if (out.length > VERIFY_TAIL_LINES)
      lines.push(s.dim(`    │ … ${out.length - VERIFY_TAIL_LINES} lines before`));
    for (const l of out.slice(-VERIFY_TAIL_LINES))
      if (v.output.trim()) lines.push(s.dim(`    │ ${truncate(l, width - 6)}`));
  }
  return lines;
}

function attemptLine(a: Attempt, s: Style): string[] {
  // An attempt's outcome is the state it moved the task to: "queued" means another attempt followed.
  const outcome = !a.finishedAt
    ? s.cyan("running")
    : a.outcome === "queued"
      ? s.yellow("retried")
      : taskStateColor(a.outcome ?? "?", s);
  const took = a.finishedAt
    ? duration(Date.parse(a.finishedAt) - Date.parse(a.startedAt))
    : `${age(a.startedAt)} so far`;
  const lines = [
    `  #${a.n}  ${a.sessionId ?? s.dim("no session")}  ${outcome}  ${took}  ${s.dim(`on ${a.replica}`)}`,
  ];
  if (a.error) lines.push(`      ${s.red(`${a.error.name}: ${firstLine(a.error.message)}`)}`);
  return lines;
}

/** `task show`: the task's fields, its result, its attempts and its state history. */
export function showLines(t: Task, s: Style, diff?: Diff, width = 100): string[] {
  const labels = Object.entries(t.labels).map(([k, v]) => `${k}=${v}`);
  const rows: [string, string | null | undefined][] = [
    ["prompt", truncate(firstLine(t.prompt), width - 16)],
    ["repo", t.repo],
    ["base", t.baseRef],
    ["model", t.model],
    ["agent", t.agent],
    ["priority", String(t.priority)],
    ["timeout", duration(t.timeoutMs)],
    ["attempts", `${t.attempts} of ${t.maxAttempts}`],
    [
      "budget",
      t.maxCostUsd === null && t.maxTokens === null
        ? null
        : `${[
            t.maxCostUsd !== null ? `$${t.maxCostUsd}` : "",
            t.maxTokens !== null ? `${t.maxTokens} tokens` : "",
          ]
            .filter(Boolean)
            .join(", ")} (${t.budgetMode})`,
    ],
    ["labels", labels.join(", ") || null],
    ["key", t.idempotencyKey],
    ["verify", t.verify],
    ["webhook", t.webhook],
    [
      "lands",
      t.pr
        ? `pull request${t.pr.draft ? " (draft)" : ""}${t.pr.base ? ` into ${t.pr.base}` : ""}`
        : t.commit
          ? "commit"
          : null,
    ],
    ["project", t.projectId],
    ["session", t.sessionId],
    ["created", `${t.createdAt} ${s.dim(`(${age(t.createdAt)} ago)`)}`],
    ["finished", t.finishedAt],
  ];
  if (t.state === "queued" && Date.parse(t.availableAt) > Date.now())
    rows.push(["next try", `${t.availableAt} ${s.dim("(retry back-off)")}`]);
  const lines = [
    `${s.bold(t.id)}  ${taskStateColor(t.state, s)}`,
    ...rows.filter(([, v]) => v).map(([k, v]) => `  ${s.dim(k.padEnd(9))}  ${v}`),
  ];
  if (t.result || t.error) {
    lines.push("", s.bold("result"), ...resultLines(t, s, diff, width).map((l) => `  ${l}`));
    if (t.result?.summary) lines.push(`    ${s.italic(truncate(firstLine(t.result.summary), width - 6))}`);
  }
  if (t.attemptList?.length)
    lines.push("", s.bold("attempts"), ...t.attemptList.flatMap((a) => attemptLine(a, s)));
  if (t.history?.length) {
    const rows = t.history.map((h) => [
      offset(h.at, t.createdAt),
      `${h.from ? `${h.from} → ` : "→ "}${taskStateColor(h.to, s)}`,
      h.reason && h.reason !== h.to ? h.reason : "",
    ]);
    lines.push(
      "",
      s.bold("history"),
      ...table(["AT", "STATE", "WHY"], rows, s)
        .split("\n")
        .map((l) => `  ${l}`),
    );
  }
  return lines;
}

export function tasksTable(items: Task[], s: Style, width = 100): string {
  const rows = items.map((t) => [
    t.id,
    taskStateColor(t.state, s),
    String(t.priority),
    `${t.attempts}/${t.maxAttempts}`,
    age(t.createdAt),
    truncate(firstLine(t.prompt), Math.max(20, width - 70)),
  ]);
  return table(["ID", "STATE", "PRI", "ATTEMPTS", "AGE", "PROMPT"], rows, s);
}
