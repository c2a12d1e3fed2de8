import { readdir, readFile, stat } from "node:fs/promises";
import { extname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { brotliCompress, gzip, constants as zlib } from "node:zlib";
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import type { Env } from "./context.ts";

/** Where `npm run build -w @flotilla/web` writes the UI (the package sits beside this one). */
export const WEB_DIST = fileURLToPath(new URL("../../../web/dist/", import.meta.url));

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
};

// The UI talks only to its own origin; inline styles are allowed for React's style attributes.
const CSP =
  "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const COMPRESSIBLE = new Set([".html", ".js", ".css", ".svg", ".json", ".txt"]);
const brotli = promisify(brotliCompress);
const gzipP = promisify(gzip);

/** The encoding to answer with: brotli, else gzip, else none (q-values are not weighed: browsers send both). */
function pickEncoding(accept: string | undefined): "br" | "gzip" | undefined {
  const a = accept ?? "";
  if (/\bbr\b/.test(a)) return "br";
  if (/\bgzip\b/.test(a)) return "gzip";
  return undefined;
}

const NOT_BUILT = `<!doctype html><meta charset="utf-8"><title>Flotilla</title>
<p>The web UI is not built. Run <code>npm run build -w @flotilla/web</code> (npm start does it for you).</p>`;

async function listFiles(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const abs = join(d, e.name);
      if (e.isDirectory()) await walk(abs);
      else out.set(`/${relative(dir, abs).split(sep).join("/")}`, abs);
    }
  };
  await walk(dir);
  return out;
}

/**
 * Serves the built UI: its files are public (like /healthz: they hold no data), and a GET that
 * accepts HTML on a path no API route starts with gets index.html, so deep links work. Only files
 * found by listing the build directory are served, so no request path ever reaches the disk.
 * API paths never fall back: an API GET from a browser tab still gets JSON (or 401).
 */
export function webUi(app: OpenAPIHono<Env>, dist = WEB_DIST): MiddlewareHandler<Env> {
  let files = new Map<string, string>();
  let builtAt = -1;
  let apiSegments: Set<string> | undefined;
  // Compressed once per file and encoding, on first request: the build is fixed until index.html changes.
  let packed = new Map<string, Promise<Uint8Array>>();
  // Rebuilds replace hashed asset names: re-list whenever index.html changes.
  const current = async () => {
    const m = await stat(join(dist, "index.html")).then(
      (st) => st.mtimeMs,
      () => -1,
    );
    if (m !== builtAt) {
      files = m < 0 ? new Map() : await listFiles(dist);
      packed = new Map();
      builtAt = m;
    }
    return files;
  };
  const send = async (c: Context, abs: string, cache: string) => {
    c.header("content-type", TYPES[extname(abs)] ?? "application/octet-stream");
    c.header("cache-control", cache);
    c.header("x-content-type-options", "nosniff");
    if (abs.endsWith(".html")) c.header("content-security-policy", CSP);
    const enc = COMPRESSIBLE.has(extname(abs)) ? pickEncoding(c.req.header("accept-encoding")) : undefined;
    if (COMPRESSIBLE.has(extname(abs))) c.header("vary", "accept-encoding");
    if (enc) c.header("content-encoding", enc);
    if (c.req.method === "HEAD") return c.body(null);
    if (!enc) return c.body(new Uint8Array(await readFile(abs)));
    const key = `${enc}:${abs}`;
    let body = packed.get(key);
    if (!body) {
      body = readFile(abs).then((raw) =>
        enc === "br" ? brotli(raw, { params: { [zlib.BROTLI_PARAM_QUALITY]: 9 } }) : gzipP(raw, { level: 9 }),
      );
      packed.set(key, body);
      body.catch(() => packed.delete(key));
    }
    return c.body(new Uint8Array(await body));
  };
  return async (c, next) => {
    if (c.req.method !== "GET" && c.req.method !== "HEAD") return next();
    const path = c.req.path;
    const found = await current();
    const file = found.get(path);
    // Vite fingerprints everything under /assets, so those may be cached forever.
    if (file && path !== "/index.html")
      return send(c, file, path.startsWith("/assets/") ? "public, max-age=31536000, immutable" : "no-cache");
    // A stale page asking for an asset of an older build: say it is gone, not that it needs a login.
    if (path.startsWith("/assets/")) return c.text("not found", 404);
    if (!(c.req.header("accept") ?? "").includes("text/html")) return next();
    apiSegments ??= new Set(
      app.routes.filter((r) => r.path.startsWith("/")).map((r) => r.path.split("/")[1] ?? ""),
    );
    const segment = path.split("/")[1] ?? "";
    if (segment && apiSegments.has(segment)) return next();
    const index = found.get("/index.html");
    if (!index) return c.html(NOT_BUILT, 503);
    return send(c, index, "no-cache");
  };
}
