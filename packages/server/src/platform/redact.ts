/**
 * The last line of defence: secret values this process knows (provider keys, forge tokens and
 * webhook secrets, the metrics scrape token) are replaced by `[redacted]` in every log line and
 * every stored event, wherever they came from (an agent that found a key in a repository and
 * printed it, an error message that quoted one). Shorter values are not registered: replacing
 * every occurrence of a short string would mangle ordinary text.
 */
const known = new Set<string>();
const MIN_LENGTH = 8;
export const REDACTED = "[redacted]";

export function registerSecret(value: string | undefined): void {
  if (value && value.length >= MIN_LENGTH) known.add(value);
}

/** `text` with every known secret replaced. */
export function redactSecrets(text: string): string {
  let out = text;
  for (const v of known) if (out.includes(v)) out = out.split(v).join(REDACTED);
  return out;
}

export function knowsSecrets(): boolean {
  return known.size > 0;
}
