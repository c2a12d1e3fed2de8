import { FlotillaError } from "@flotilla/contracts";
import type { Config } from "../config/config.ts";
import type { Logger } from "../platform/logger.ts";
import { DriverRegistry, type RuntimeDriver } from "./driver.ts";
import { LocalDriver } from "./local/local-driver.ts";
import { SandboxDriver } from "./sandbox/sandbox-driver.ts";

/**
 * The drivers of this control plane. `local` is always there (it needs nothing, and finds harnesses
 * a previous run placed with it), but runs new agents only when chosen on purpose. `sandbox` needs
 * bubblewrap and socat: when it is the configured runtime and they are missing, boot stops with
 * how to install them, rather than run agents unsandboxed.
 */
export function runtimeDrivers(config: Config, log: Logger): DriverRegistry {
  const drivers: RuntimeDriver[] = [
    new LocalDriver(
      config.harness.opencodeBin,
      log.child({ component: "local-driver" }),
      config.harness.npmCacheDir,
    ),
  ];
  try {
    drivers.push(new SandboxDriver(config.harness.opencodeBin, log.child({ component: "sandbox-driver" })));
  } catch (e) {
    if (config.runtime === "sandbox") throw e;
    log.warn({ reason: (e as Error).message }, "sandbox runtime unavailable");
  }
  if (config.runtime === "local")
    log.warn(
      "runtime local: agents run unsandboxed as this control plane's user and can read its data, tokens and keys; use it only for trusted prompts",
    );
  if (!drivers.some((d) => d.name === config.runtime))
    throw new FlotillaError("runtime_unavailable", `no runtime driver ${config.runtime}`);
  return new DriverRegistry(drivers, config.runtime);
}
