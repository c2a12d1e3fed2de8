import { type Style, visibleLength } from "./style.ts";

export function age(iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  if (ms >= 3600_000) {
    const h = Math.floor(ms / 3600_000);
    return `${h}h ${String(Math.floor((ms % 3600_000) / 60_000)).padStart(2, "0")}m`;
  }
  const m = Math.floor(ms / 60_000);
  return `${m}m ${String(Math.round((ms % 60_000) / 1000)).padStart(2, "0")}s`;
}

export const count = (n: number): string => n.toLocaleString("en-US");

export const money = (c: number): string => (c < 1 ? `$${c.toFixed(4)}` : `$${c.toFixed(2)}`);

export function truncate(s: string, max: number): string {
  if (max <= 1) return s.slice(0, Math.max(0, max));
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** Keeps the end, which is the informative part of a path. */
export function truncateLeft(s: string, max: number): string {
  return s.length > max ? `…${s.slice(s.length - max + 1)}` : s;
}

export function firstLine(s: string): string {
  const lines = s.trim().split("\n");
  return lines.length > 1 ? `${lines[0]} …` : (lines[0] ?? "");
}

export const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/** Left-aligned columns separated by two spaces; the header is dimmed. Cells may carry colour. */
export function table(header: string[], rows: string[][], style: Style): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => visibleLength(r[i] ?? ""))));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + " ".repeat(widths[i]! - visibleLength(c))))
      .join("  ")
      .trimEnd();
  return [style.dim(line(header)), ...rows.map(line)].join("\n");
}

/** "+3 −1", with the zero side quiet. */
export const changes = (add: number, del: number, s: Style): string =>
  `${add ? s.green(`+${add}`) : s.dim("+0")} ${del ? s.red(`−${del}`) : s.dim("−0")}`;
