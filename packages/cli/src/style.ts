const CODES = {
  bold: [1, 22],
  dim: [2, 22],
  italic: [3, 23],
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  blue: [34, 39],
  magenta: [35, 39],
  cyan: [36, 39],
  gray: [90, 39],
} as const;

export type Style = Record<keyof typeof CODES, (s: string) => string> & { enabled: boolean };

/** https://no-color.org: any non-empty NO_COLOR turns colour off; so does output that is not a terminal. */
export function colorEnabled(stream: { isTTY?: boolean }): boolean {
  return Boolean(stream.isTTY) && !process.env.NO_COLOR;
}

export function makeStyle(enabled: boolean): Style {
  const style = { enabled } as Style;
  for (const [name, [open, close]] of Object.entries(CODES)) {
    style[name as keyof typeof CODES] = enabled ? (s) => `\x1b[${open}m${s}\x1b[${close}m` : (s) => s;
  }
  return style;
}

export const styleFor = (stream: { isTTY?: boolean }): Style => makeStyle(colorEnabled(stream));

/** Visible width of a string that may hold our own colour codes. */
const SGR = new RegExp(`${String.fromCharCode(27)}\\[\\d+m`, "g");
export const visibleLength = (s: string): number => s.replace(SGR, "").length;
