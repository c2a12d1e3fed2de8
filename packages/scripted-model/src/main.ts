import { parseArgs } from "node:util";
import { demoScenario, loadScenario } from "./scenario.ts";
import { startScriptedModel } from "./server.ts";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    host: { type: "string", default: "127.0.0.1" },
    scenario: { type: "string" },
    quiet: { type: "boolean", default: false },
  },
});

const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`invalid --port ${values.port}`);
  process.exit(2);
}
const scenario = values.scenario ? await loadScenario(values.scenario) : demoScenario;
const server = await startScriptedModel({
  scenario,
  port,
  host: values.host,
  logger: values.quiet ? undefined : (msg) => console.error(msg),
});
// Parent processes parse this exact line to learn the port.
console.log(`scripted model listening on ${server.url}`);

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  server.close().then(() => process.exit(0));
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
