import { FlotillaError } from "@flotilla/contracts";
import type { MiddlewareHandler } from "hono";
import { errorBody } from "../errors.ts";

/**
 * The input edge, in front of every route (after the body size limit): what no route can take.
 * - A NUL byte anywhere in the path, the query string or a JSON body's strings (keys included):
 *   400 naming where. Postgres cannot store one in text, so it would otherwise surface as a 500
 *   from the first query that carries it, after whatever came before that query was done.
 * - A JSON body nested deeper than `MAX_JSON_DEPTH`: 400, judged on the raw text before anything
 *   parses it (JSON.parse of a megabyte of `[` holds the event loop for seconds, or overflows the
 *   stack). The text read here is the one the route's validator parses (Hono caches it).
 */
export const MAX_JSON_DEPTH = 64;

const JSON_TYPE = /^application\/([\w.-]+\+)?json\b/i;

/** The deepest nesting of arrays and objects in JSON text, counted outside strings; stops past `limit`. */
export function jsonDepth(text: string, limit = Number.POSITIVE_INFINITY): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 92 /* \ */) i++;
      else if (ch === 34 /* " */) inString = false;
    } else if (ch === 34) inString = true;
    else if (ch === 91 /* [ */ || ch === 123 /* { */) {
      if (++depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (ch === 93 /* ] */ || ch === 125 /* } */) depth--;
  }
  return max;
}

/** The path (`a.b.0`) of the first string or key holding a NUL byte in a parsed JSON value. */
export function nulPath(value: unknown, at: (string | number)[] = []): string | undefined {
  if (typeof value === "string") return value.includes("\0") ? at.join(".") || "body" : undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const p = nulPath(value[i], [...at, i]);
      if (p !== undefined) return p;
    }
  } else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      if (k.includes("\0")) return [...at, k.replaceAll("\0", "\\0")].join(".");
      const p = nulPath(v, [...at, k]);
      if (p !== undefined) return p;
    }
  }
  return undefined;
}

const nul = (field: string, where: string) =>
  new FlotillaError("invalid_request", `${field}: contains a NUL byte, which ${where} may not`, { field });

export function inputEdge(): MiddlewareHandler {
  return async (c, next) => {
    const fail = (e: FlotillaError) => c.json(errorBody(e), 400);
    const url = new URL(c.req.url);
    if (/%00/.test(url.pathname) || url.pathname.includes("\0")) return fail(nul("path", "a path"));
    for (const [k, v] of url.searchParams) {
      if (k.includes("\0")) return fail(nul("query", "a query parameter's name"));
      if (v.includes("\0")) return fail(nul(k, "a query parameter"));
    }
    const type = c.req.header("content-type") ?? "";
    if (c.req.method !== "GET" && c.req.method !== "HEAD" && JSON_TYPE.test(type)) {
      const text = await c.req.text();
      if (jsonDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH)
        return fail(
          new FlotillaError("invalid_request", `body: JSON nested deeper than ${MAX_JSON_DEPTH} levels`, {
            field: "body",
          }),
        );
      // Only parsed here when a NUL could be in it (an escape, or a raw one, which is not JSON).
      if (/\\u0000/i.test(text) || text.includes("\0")) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined; // malformed: the route's validator says so
        }
        const at = parsed === undefined ? undefined : nulPath(parsed);
        if (at !== undefined) return fail(nul(at, "a JSON string"));
      }
    }
    return next();
  };
}
