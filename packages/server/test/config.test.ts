import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FlotillaClient } from "@flotilla/client";
import { FlotillaError } from "@flotilla/contracts";
import { type Scenario, startScriptedModel } from "@flotilla/scripted-model";
import { createLogger, loadConfig, startFlotilla } from "@flotilla/server";
import { describe, expect, it } from "vitest";
import { collectUntil, createTestDb, makeRepo, tempDir, untilTurnFinished } from "../../../test/support.ts";
import { opencodeConfig } from "../src/agents/opencode/config.ts";

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
    // The key reaches the harness by reference only, never inlined in its config.
    expect(JSON.stringify(opencodeConfig(config))).not.toContain("sk-local-secret-123");
    expect(JSON.stringify(opencodeConfig(config))).toContain("{env:LOCALLLM_KEY}");
    const logFile = join(home, "log.jsonl");
    const { createWriteStream, readFileSync } = await import("node:fs");
    const server = await startFlotilla(
      config,
      createLogger("debug", { destination: createWriteStream(logFile) }),
    );
    try {
      const client = new FlotillaClient({ baseUrl: server.url, token: server.adminToken! });
      const s = await client.sessions.create({ repo: makeRepo(), prompt: "hello" });
      expect(s.model).toBe("localllm/qwen-coder");
      const events = await collectUntil(client, s.id, untilTurnFinished(1));
      const fin = events.find((e) => e.type === "turn.finished");
      expect(fin?.type === "turn.finished" && fin.data.outcome).toBe("success");
      expect(
        events.some((e) => e.type === "text.completed" && e.data.text === "served by the local endpoint"),
      ).toBe(true);
      // The provider saw the key the harness got from its environment.
      const req = model.requests.find((r) => r.kind === "agent")!;
      expect(req.model).toBe("qwen-coder");
      expect(req.apiKey).toBe("sk-local-secret-123");
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
  });
});
