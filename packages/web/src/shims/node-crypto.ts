/** The one node:crypto function @flotilla/contracts uses, over the browser's Web Crypto. */
export function randomBytes(n: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(n));
}
