import { randomBytes } from "node:crypto";

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
let lastMs = 0;
let counter = 0;

/**
 * A message id in OpenCode's own ascending format (`msg_` + 12 hex digits of ms·4096+counter,
 * 48 bits, + 14 base62 characters), so ids we choose sort among the ones OpenCode makes. Choosing
 * the prompt's id ourselves lets us tell this turn's answer from an earlier one's.
 */
export function opencodeMessageId(now = Date.now()): string {
  if (now === lastMs) counter++;
  else {
    lastMs = now;
    counter = 0;
  }
  const n = (BigInt(now) * 0x1000n + BigInt(counter)) & 0xffffffffffffn;
  const bytes = randomBytes(14);
  let tail = "";
  for (const b of bytes) tail += BASE62[b % 62];
  return `msg_${n.toString(16).padStart(12, "0")}${tail}`;
}
