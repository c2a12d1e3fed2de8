import { tempDir } from "../../../test/support.ts";
import { defaultOpencodeBin } from "../src/config/config.ts";
import { createLogger } from "../src/platform/logger.ts";
import { LocalDriver } from "../src/runtime/local/local-driver.ts";
import { SandboxDriver } from "../src/runtime/sandbox/sandbox-driver.ts";
import { driverContract } from "./driver-contract.ts";

// One suite, every driver of this machine. Docker and Kubernetes join by adding a line here.
const log = createLogger("warn");
const npmCache = tempDir("contract-npm");
driverContract("local", () => new LocalDriver(defaultOpencodeBin(), log, npmCache));
driverContract("sandbox", () => new SandboxDriver(defaultOpencodeBin(), log));
