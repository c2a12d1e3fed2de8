// Writes test/github/api-subset.json: the operations of GitHub's REST API that Flotilla calls, cut
// from GitHub's own OpenAPI description (the dereferenced api.github.com document that the npm
// package @octokit/openapi publishes). The loopback GitHub in the tests validates every request
// Octokit sends, and every response it answers, against these schemas.
//
// Run it again after changing which endpoints Flotilla uses (the package is large, so it is not a
// dependency; install it anywhere and pass its document):
//   npm install --prefix /tmp/oa @octokit/openapi@23.0.2
//   node scripts/github-api-subset.mjs /tmp/oa/node_modules/@octokit/openapi/generated/api.github.com.deref.json
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const OPERATIONS = [
  ["get", "/repos/{owner}/{repo}"],
  ["post", "/repos/{owner}/{repo}/pulls"],
  ["get", "/repos/{owner}/{repo}/pulls"],
  ["get", "/repos/{owner}/{repo}/pulls/{pull_number}"],
  ["get", "/repos/{owner}/{repo}/commits/{ref}/check-runs"],
  ["get", "/repos/{owner}/{repo}/commits/{ref}/status"],
  ["get", "/repos/{owner}/{repo}/issues/{issue_number}"],
  ["get", "/repos/{owner}/{repo}/issues/{issue_number}/comments"],
  ["post", "/repos/{owner}/{repo}/issues/{issue_number}/comments"],
  ["post", "/repos/{owner}/{repo}/issues/{issue_number}/labels"],
  ["get", "/repos/{owner}/{repo}/installation"],
  ["post", "/app/installations/{installation_id}/access_tokens"],
];

const source =
  process.argv[2] ??
  join(
    dirname(createRequire(import.meta.url).resolve("@octokit/openapi/package.json")),
    "generated/api.github.com.deref.json",
  );
const spec = JSON.parse(readFileSync(source, "utf8"));
const paths = {};
for (const [method, path] of OPERATIONS) {
  const op = spec.paths[path]?.[method];
  if (!op) throw new Error(`GitHub's description has no ${method.toUpperCase()} ${path}`);
  const responses = {};
  for (const [status, r] of Object.entries(op.responses)) {
    const json = r.content?.["application/json"];
    const example = json?.examples ? Object.values(json.examples)[0]?.value : json?.example;
    responses[status] = json?.schema ? { schema: json.schema, example } : {};
  }
  paths[path] ??= {};
  paths[path][method] = {
    operationId: op.operationId,
    parameters: (op.parameters ?? []).map((p) => ({
      name: p.name,
      in: p.in,
      required: !!p.required,
      schema: p.schema,
    })),
    requestBody: op.requestBody?.content?.["application/json"]?.schema ?? null,
    requestBodyRequired: !!op.requestBody?.required,
    responses,
  };
}
const out = {
  source: `@octokit/openapi ${spec.info?.version ?? ""} api.github.com.deref.json`.trim(),
  openapi: spec.openapi,
  paths,
};
const target = join(import.meta.dirname, "..", "test", "github", "api-subset.json");
writeFileSync(target, `${JSON.stringify(out)}\n`);
console.log(`wrote ${target}: ${OPERATIONS.length} operations, ${JSON.stringify(out).length} bytes`);
