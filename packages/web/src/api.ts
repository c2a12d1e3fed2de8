import { FlotillaClient } from "@flotilla/client";
import { CSRF_COOKIE, CSRF_HEADER } from "@flotilla/contracts/light";

function cookie(name: string): string | undefined {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return undefined;
}

/**
 * The page holds no token: the httpOnly session cookie authenticates it, and every request echoes
 * the readable CSRF cookie in a header (the server ignores it on GETs and requires it on the rest).
 */
export const api = new FlotillaClient({
  baseUrl: window.location.origin,
  credentials: "include",
  headers: (): Record<string, string> => {
    const csrf = cookie(CSRF_COOKIE);
    return csrf ? { [CSRF_HEADER]: csrf } : {};
  },
});

/** The httpOnly session cookie is invisible to script; its readable CSRF twin is set and cleared with it. */
export const hasSessionCookie = () => cookie(CSRF_COOKIE) !== undefined;

export const isUnauthorized = (e: unknown) =>
  typeof e === "object" && e !== null && (e as { status?: number }).status === 401;

export const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));
