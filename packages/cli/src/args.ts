import { resolve } from "node:path";
import { InvalidArgumentError } from "commander";

// Same test as the server's: anything else is a local path, resolved here (the server has its own cwd).
const URL_LIKE = /^(https?|git|ssh|file):\/\/|^[\w.-]+@[\w.-]+:/;

/** A repository argument as the server should see it: URLs as given, paths made absolute. */
export const repoArg = (repo: string | undefined): string => {
  const r = repo ?? process.cwd();
  return URL_LIKE.test(r) ? r : resolve(r);
};

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3600_000 };

/** `90s`, `30m`, `1h`, `1h30m`, `1500ms`; a bare number is milliseconds (what the API takes). */
export function durationMs(v: string): number {
  const text = v.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (!parts.length || parts.map((p) => p[0]).join("") !== text)
    throw new InvalidArgumentError("expected a duration like 90s, 30m, 1h30m or milliseconds");
  return Math.round(parts.reduce((sum, p) => sum + Number(p[1]) * UNIT_MS[p[2]!]!, 0));
}

/** A whole number in [min, max]; negative ones too (commander passes `-5` through as the value). */
export const intIn =
  (min: number, max: number) =>
  (v: string): number => {
    const n = Number(v);
    if (!/^-?\d+$/.test(v.trim()) || n < min || n > max)
      throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}`);
    return n;
  };

/** A budget in USD: a positive amount, "$" allowed ("0.50", "$2"). */
export function usd(v: string): number {
  const n = Number(v.trim().replace(/^\$/, ""));
  if (!Number.isFinite(n) || n <= 0)
    throw new InvalidArgumentError("expected a positive amount in USD, e.g. 0.50");
  return n;
}

export function label(v: string): [string, string] {
  const i = v.indexOf("=");
  if (i <= 0) throw new InvalidArgumentError("expected key=value");
  return [v.slice(0, i), v.slice(i + 1)];
}

/** Repeatable `--label k=v`: each use adds one; a repeated key keeps the last value. */
export function collectLabel(v: string, acc: Record<string, string> = {}): Record<string, string> {
  const [k, val] = label(v);
  return { ...acc, [k]: val };
}

/** The server filters on one label: validate the shape here, send it as written. */
export function labelFilter(v: string): string {
  label(v);
  return v;
}

/** Repeatable and comma-separated (`--event task.failed,task.dead`), each checked against `allowed`. */
export const collectChoice =
  <T extends string>(allowed: readonly T[]) =>
  (v: string, acc: T[] = []): T[] => {
    const out = [...acc];
    for (const item of v.split(",").map((x) => x.trim())) {
      if (!allowed.includes(item as T))
        throw new InvalidArgumentError(`expected one of ${allowed.join(", ")}`);
      if (!out.includes(item as T)) out.push(item as T);
    }
    return out;
  };
