import { FlotillaError } from "@flotilla/contracts";

/** Who is calling: the token (or the web session's token) and the org and role it carries. */
export interface Principal {
  tokenId: string;
  orgId: string;
  role: "admin" | "member";
}

export function requireAdmin(p: Principal): void {
  if (p.role !== "admin") throw new FlotillaError("forbidden", "this needs an admin token");
}
