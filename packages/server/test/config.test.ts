import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FlotillaClient } from "@flotilla/client";
import { FlotillaError } from "@flotilla/contracts";
import { type Scenario, startScriptedModel } from "@flotilla/scripted-model";
import { createLogger, loadConfig, startFlotilla } from "@flotilla/server";
import { describe, expect, it } from "vitest";
import { collectUntil, createTestDb, makeRepo, tempDir, untilTurnFinished } from "../../../test/support.ts";
import { opencodeConfig } from "../src/agents/opencode/config.ts";
import { parseConfigFile } from "../src/config/config.ts";

describe("configuration", () => {
  it("a custom OpenAI-compatible provider declared in config.yaml drives a session, with its key from the environment", async () => {
    const scenario: Scenario = { rules: [{ steps: [{ text: "served by the local endpoint" }] }] };
    const model = await startScriptedModel({ scenario });
    const home = tempDir("cfg");
    writeFileSync(
      join(home, "config.yaml"),
      `defaultModel: localllm/qwen-coder
permission: allow
providers:
  localllm:
    name: My vLLM
    baseURL: ${model.url}
    apiKeyEnv: LOCALLLM_KEY
    models:
      qwen-coder: { name: Qwen Coder }
`,
    );
    const config = loadConfig({
      env: { FLOTILLA_HOME: home, DATABASE_URL: await createTestDb(), LOCALLLM_KEY: "sk-local-secret-123" },
      overrides: { port: 0 },
    });
    expect(config.providerEnv).toEqual({ LOCALLLM_KEY: "sk-local-secret-123" });
    const logFile = join(home, "log.jsonl");
    const { createWriteStream, readFileSync } = await import("node:fs");
    const server = await startFlotilla(
      config,
      createLogger("debug", { destination: createWriteStream(logFile) }),
    );
    try {
      // The harness is pointed at the model gateway with a gateway token: the key is not in its
      // config, not even by reference.
      const harnessConfig = JSON.stringify(opencodeConfig(config, "fgw_test"));
      expect(harnessConfig).not.toContain("sk-local-secret-123");
      expect(harnessConfig).not.toContain("LOCALLLM_KEY");
      expect(harnessConfig).toContain(`${config.gateway.url}/gateway/localllm`);
      const client = new FlotillaClient({ baseUrl: server.url, token: server.adminToken! });
      const s = await client.sessions.create({ repo: makeRepo(), prompt: "hello" });
      expect(s.model).toBe("localllm/qwen-coder");
      const events = await collectUntil(client, s.id, untilTurnFinished(1));
      const fin = events.find((e) => e.type === "turn.finished");
      expect(fin?.type === "turn.finished" && fin.data.outcome).toBe("success");
      expect(
        events.some((e) => e.type === "text.completed" && e.data.text === "served by the local endpoint"),
      ).toBe(true);
      // The provider saw the key, which the gateway put in place of the harness's token.
      const req = model.requests.find((r) => r.kind === "agent")!;
      expect(req.model).toBe("qwen-coder");
      expect(req.apiKey).toBe("sk-local-secret-123");
      // OpenCode's title agent is off (Flotilla titles sessions itself): the turn is the only
      // model call the session made.
      expect(model.requests.filter((r) => r.kind === "auxiliary")).toEqual([]);
      const catalog = await client.models();
      expect(catalog.default).toBe("localllm/qwen-coder");
      expect(catalog.models.map((m) => m.id)).toContain("localllm/qwen-coder");
      expect(readFileSync(logFile, "utf8")).not.toContain("sk-local-secret-123");
    } finally {
      await server.close();
      await model.close();
    }
  });

  it("a bad config file is refused at start with the field named", () => {
    const home = tempDir("badcfg");
    mkdirSync(home, { recursive: true });
    writeFileSync(
      join(home, "config.yaml"),
      "providers:\n  x:\n    baseURL: not-a-url\n    models: { m: {} }\n",
    );
    let err: unknown;
    try {
      loadConfig({ env: { FLOTILLA_HOME: home } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FlotillaError);
    expect((err as FlotillaError).field).toBe("providers.x.baseURL");
    expect((err as FlotillaError).message).toContain(`${join(home, "config.yaml")}:3: providers.x.baseURL:`);
  });

  it("every problem of a config file is named at once, with its line; a YAML syntax error names the file", () => {
    const path = join(tempDir("badcfg2"), "config.yaml");
    writeFileSync(path, 'port: "abc"\nscheduler:\n  maxConcurrent: -3\n  bogus: 1\nruntime: vm\n');
    const problems = (text: string) => {
      try {
        parseConfigFile(path, text);
      } catch (e) {
        return (e as Error).message.split("\n");
      }
      return [];
    };
    const four = problems(readFileSync(path, "utf8"));
    expect(four.map((l) => l.replace(/: [A-Z].*$/, ""))).toEqual([
      "the config file has 4 problems:",
      `  ${path}:1: port`,
      `  ${path}:3: scheduler.maxConcurrent`,
      `  ${path}:4: scheduler.bogus: unknown field`,
      `  ${path}:5: runtime`,
    ]);
    const lines = problems("port: 1\nscheduler: [\n  x: : y\n");
    expect(lines[0]).toMatch(/^the config file has (a problem|\d+ problems):$/);
    expect(lines.slice(1).length).toBeGreaterThan(0);
    for (const l of lines.slice(1)) expect(l).toMatch(new RegExp(`^  ${path}:\\d+: \\S`));
    expect(lines[1]).toContain(`${path}:3:`);
  });

  it("tracing is off by default; the OTLP variables beat config.yaml's endpoint, and can turn it off", () => {
    const home = tempDir("tracecfg");
    mkdirSync(home, { recursive: true });
    expect(loadConfig({ env: { FLOTILLA_HOME: home } }).tracing).toEqual({
      endpoint: undefined,
      headers: {},
    });
    writeFileSync(join(home, "config.yaml"), "tracing:\n  endpoint: http://collector:4318/\n");
    const from = (env: Record<string, string>) =>
      loadConfig({ env: { FLOTILLA_HOME: home, ...env } }).tracing;
    expect(from({}).endpoint).toBe("http://collector:4318/v1/traces");
    expect(from({ OTEL_EXPORTER_OTLP_ENDPOINT: "https://otel.example:4318" }).endpoint).toBe(
      "https://otel.example:4318/v1/traces",
    );
    const full = from({
      OTEL_EXPORTER_OTLP_ENDPOINT: "https://otel.example:4318",
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "https://traces.example/otlp/spans",
      OTEL_EXPORTER_OTLP_HEADERS: "api-key=abc%3D1,x-team=core",
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: "x-team=agents",
    });
    expect(full).toEqual({
      endpoint: "https://traces.example/otlp/spans",
      headers: { "api-key": "abc=1", "x-team": "agents" },
    });
    expect(from({ OTEL_SDK_DISABLED: "true" }).endpoint).toBeUndefined();
    expect(from({ OTEL_TRACES_EXPORTER: "none" }).endpoint).toBeUndefined();
    writeFileSync(join(home, "config.yaml"), "tracing:\n  endpoint: not-a-url\n");
    expect(() => loadConfig({ env: { FLOTILLA_HOME: home } })).toThrow(/tracing\.endpoint/);
  });
});
