import { randomBytes } from "node:crypto";

// Crockford base32: sortable as plain strings, no ambiguous letters.
const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

export type IdPrefix =
  | "ses"
  | "wsp"
  | "shd"
  | "hrn"
  | "evt"
  | "tok"
  | "org"
  | "prj"
  | "err"
  | "tsk"
  | "msg"
  | "whk"
  | "dlv"
  | "gwc"
  | "sec"
  | "req";

let lastTime = 0;
let lastRand = new Uint8Array(10);

function encode(bytes: Uint8Array, chars: number): string {
  let bits = 0;
  let value = 0;
  let out = "";
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out.slice(0, chars);
}

/**
 * `prefix_` + 10 chars of millisecond time + 16 chars of randomness (a ULID body). Ids made in the
 * same millisecond increment the random part, so ids from one process sort in creation order.
 */
export function newId(prefix: IdPrefix): string {
  const now = Date.now();
  if (now === lastTime) {
    for (let i = lastRand.length - 1; i >= 0; i--) {
      const v = lastRand[i]! + 1;
      lastRand[i] = v & 0xff;
      if (v <= 0xff) break;
    }
  } else {
    lastTime = now;
    lastRand = new Uint8Array(randomBytes(10));
  }
  let t = now;
  let time = "";
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  return `${prefix}_${time}${encode(lastRand, 16)}`;
}

export const idPattern = (prefix: IdPrefix) => new RegExp(`^${prefix}_[0-9a-z]{26}$`);
