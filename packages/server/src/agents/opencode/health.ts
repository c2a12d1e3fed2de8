/** The Basic-auth header OpenCode's server expects (user `opencode`, the harness's password). */
export const basicAuth = (password: string) =>
  `Basic ${Buffer.from(`opencode:${password}`).toString("base64")}`;

/**
 * Whether an OpenCode server answers its health check within timeoutMs.
 *
 * The deadline is our own (ref'd) timer, not `AbortSignal.timeout` (unref'd): a request to a
 * harness that is still starting can sit on a socket undici has unref'd, and with nothing else
 * holding the event loop (a process whose only work is starting a harness) Node then exits
 * mid-await (code 13) instead of waiting out the deadline. Measured: 3 of 40 starts of the
 * driver contract's start-harness fixture.
 */
export async function healthy(url: string, password: string, timeoutMs = 500): Promise<boolean> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  try {
    const res = await fetch(`${url}/global/health`, {
      headers: { authorization: basicAuth(password) },
      signal: ac.signal,
    });
    await res.body?.cancel();
    return res.ok;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
