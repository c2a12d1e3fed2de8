import { FlotillaError } from "@flotilla/contracts";
import type { Principal } from "./principal.ts";

/**
 * Who may choose where an agent runs. Any caller may ask for the sandbox; only an admin may ask for
 * `local`, which runs the agent as the control plane's own user with nothing between them.
 */
export function checkRuntime(runtime: string | undefined, p: Principal): void {
  if (runtime === "local" && p.role !== "admin")
    throw new FlotillaError("forbidden", "runtime local (unsandboxed) needs an admin token", {
      field: "runtime",
    });
}
