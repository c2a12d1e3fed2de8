/** A listen host as it goes in a URL: IPv6 addresses in brackets. */
export const hostForUrl = (h: string) => (h.includes(":") ? `[${h}]` : h);
