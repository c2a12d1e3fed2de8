// Writes the OpenAPI document generated from the zod route contracts to packages/client/openapi.json.
// `--check` fails when the committed document is stale: the contract, not a hand edit, is the source.
import { readFileSync, writeFileSync } from "node:fs";
import { createApp, openapiInfo } from "@flotilla/server";

const target = new URL("../packages/client/openapi.json", import.meta.url).pathname;
// Routes only register their schemas at construction; no service is called while generating.
const app = createApp({ config: { bodyLimitBytes: 1 } } as Parameters<typeof createApp>[0]);
const doc = `${JSON.stringify(app.getOpenAPI31Document(openapiInfo), null, 2)}\n`;

if (process.argv.includes("--check")) {
  let current = "";
  try {
    current = readFileSync(target, "utf8");
  } catch {}
  if (current !== doc) {
    console.error("packages/client/openapi.json is stale: run `npm run openapi` and commit the result");
    process.exit(1);
  }
  console.log("openapi.json is up to date");
} else {
  writeFileSync(target, doc);
  console.log(`wrote ${target}`);
}
