/** The Basic-auth header OpenCode's server expects (user `opencode`, the harness's password). */
export const basicAuth = (password: string) =>
  `Basic ${Buffer.from(`opencode:${password}`).toString("base64")}`;

/** Whether an OpenCode server answers its health check within timeoutMs. */
export async function healthy(url: string, password: string, timeoutMs = 500): Promise<boolean> {
  try {
    const res = await fetch(`${url}/global/health`, {
      headers: { authorization: basicAuth(password) },
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.body?.cancel();
    return res.ok;
  } catch {
    return false;
  }
}
