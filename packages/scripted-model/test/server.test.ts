import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ChatMessage,
  loadScenario,
  type Scenario,
  type ScriptedModelServer,
  selectReply,
  startScriptedModel,
} from "../src/index.ts";

const TOOLS = [{ type: "function", function: { name: "write", parameters: {} } }];

interface Chunk {
  choices: {
    delta: { content?: string; tool_calls?: { id: string; function: { name: string } }[] };
    finish_reason: string | null;
  }[];
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

/** Parses an SSE body into chunks, checking the stream ends with [DONE]. */
function parseSse(body: string): Chunk[] {
  const frames = body.split("\n\n").filter((f) => f.length > 0);
  expect(frames.at(-1)).toBe("data: [DONE]");
  return frames.slice(0, -1).map((f) => JSON.parse(f.replace(/^data: /, "")) as Chunk);
}

describe("scripted model server", () => {
  let model: ScriptedModelServer;
  const scenario: Scenario = {
    rules: [
      {
        match: "^write",
        steps: [
          {
            tools: [
              { tool: "write", args: { filePath: "a" } },
              { tool: "write", args: {} },
            ],
          },
        ],
      },
      { match: "hello", steps: [{ text: "Hi there, friend." }] },
      { match: "deny", steps: [{ error: { status: 429, message: "slow down" } }] },
    ],
    default: [{ text: "default reply" }],
  };
  const chat = (messages: ChatMessage[], extra: Record<string, unknown> = {}) =>
    fetch(`${model.url}/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "scripted-1", messages, tools: TOOLS, stream: true, ...extra }),
    });

  beforeAll(async () => {
    model = await startScriptedModel({ scenario });
  });
  afterAll(() => model.close());

  it("lists the model", async () => {
    const res = await fetch(`${model.url}/models`);
    expect(((await res.json()) as { data: { id: string }[] }).data.map((m) => m.id)).toEqual(["scripted-1"]);
  });

  it("streams text in chunks that concatenate to the text, with usage on the finish chunk", async () => {
    const chunks = parseSse(await (await chat([{ role: "user", content: "hello" }])).text());
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
    expect(text).toBe("Hi there, friend.");
    expect(chunks.filter((c) => c.choices[0]?.delta.content).length).toBeGreaterThan(1);
    const last = chunks.at(-1);
    expect(last?.choices[0]?.finish_reason).toBe("stop");
    expect(last?.usage?.total_tokens).toBeGreaterThan(0);
  });

  it("streams parallel tool calls with unique ids", async () => {
    const body = await (await chat([{ role: "user", content: "write it" }])).text();
    const chunks = parseSse(body);
    const calls = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    expect(calls.map((c) => c.function.name)).toEqual(["write", "write"]);
    expect(new Set(calls.map((c) => c.id)).size).toBe(2);
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe("tool_calls");
  });

  it("answers non-stream requests with a chat.completion", async () => {
    const res = await chat([{ role: "user", content: [{ type: "text", text: "hello" }] }], { stream: false });
    const json = (await res.json()) as { object: string; choices: { message: { content: string } }[] };
    expect(json.object).toBe("chat.completion");
    expect(json.choices[0]?.message.content).toBe("Hi there, friend.");
  });

  it("returns error steps as HTTP errors", async () => {
    const res = await chat([{ role: "user", content: "deny me" }]);
    expect(res.status).toBe(429);
    expect(await res.json()).toEqual({ error: { message: "slow down", type: "rate_limit_error" } });
  });

  it("answers requests without tools as auxiliary, outside the scenario", async () => {
    const before = model.requests.length;
    const res = await chat([{ role: "user", content: "write a title" }], { tools: undefined });
    const text = parseSse(await res.text())
      .map((c) => c.choices[0]?.delta.content ?? "")
      .join("");
    expect(text).toBe("Scripted session");
    expect(model.requests[before]?.kind).toBe("auxiliary");
  });

  it("holds a hang step open until the client goes away", async () => {
    model.setScenario({ rules: [{ steps: [{ hang: true, text: "thinking" }] }] });
    const res = await chat([{ role: "user", content: "x" }]);
    // Read the first frames, then hang up: the server must not have finished the stream.
    const reader = res.body!.getReader();
    let seen = "";
    const deadline = Date.now() + 2000;
    while (!seen.includes("thinking") && Date.now() < deadline) {
      const { value } = await reader.read();
      seen += new TextDecoder().decode(value);
    }
    expect(seen).toContain("thinking");
    expect(seen).not.toContain("[DONE]");
    await reader.cancel();
    model.setScenario(scenario);
  });
});

describe("selectReply", () => {
  const scenario: Scenario = {
    rules: [
      { match: "build", steps: [{ tool: "bash", args: { command: "make {{prompt}}" } }, { text: "built" }] },
      { match: "recall", steps: [{ recall: "secret=(\\w+)", template: "It was $1" }] },
    ],
  };

  it("picks the step from the assistant messages after the latest user message", () => {
    const first = selectReply(scenario, [{ role: "user", content: "build" }]);
    expect(first.reply).toEqual({
      kind: "tools",
      calls: [{ tool: "bash", args: { command: "make build" } }],
    });
    const msgs: ChatMessage[] = [
      { role: "user", content: "build" },
      {
        role: "assistant",
        content: "",
        tool_calls: [{ id: "1", function: { name: "bash", arguments: "{}" } }],
      },
      { role: "tool", content: "ok", tool_call_id: "1" },
    ];
    expect(selectReply(scenario, msgs).reply).toEqual({
      kind: "text",
      text: "built",
      chunkDelayMs: undefined,
    });
    msgs.push({ role: "assistant", content: "built" });
    expect(selectReply(scenario, msgs).reply).toEqual({ kind: "text", text: "Done." });
  });

  it("recalls from earlier messages but not from the latest user message", () => {
    const hit = selectReply(scenario, [
      { role: "user", content: [{ type: "text", text: "note secret=ABC" }] },
      { role: "assistant", content: "ok" },
      { role: "user", content: "recall secret=NOPE" },
    ]);
    expect(hit.reply).toEqual({ kind: "text", text: "It was ABC" });
    const miss = selectReply(scenario, [{ role: "user", content: "recall secret=NOPE" }]);
    expect(miss.reply).toEqual({ kind: "text", text: "I do not remember." });
  });
});

describe("loadScenario", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "scenario-"));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it("reads YAML and JSON and rejects unknown steps", async () => {
    await writeFile(join(dir, "s.yaml"), "rules:\n  - match: hi\n    steps:\n      - text: hello\n");
    await writeFile(join(dir, "s.json"), JSON.stringify({ rules: [], default: [{ text: "x" }] }));
    await writeFile(join(dir, "bad.yaml"), "rules:\n  - steps:\n      - speak: hello\n");
    expect(await loadScenario(join(dir, "s.yaml"))).toEqual({
      rules: [{ match: "hi", steps: [{ text: "hello" }] }],
    });
    expect((await loadScenario(join(dir, "s.json"))).default).toEqual([{ text: "x" }]);
    await expect(loadScenario(join(dir, "bad.yaml"))).rejects.toThrow(/rules\[0\]\.steps\[0\]/);
  });
});
