import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { demoScenario, type Scenario, type ScriptedModelServer, startScriptedModel } from "../src/index.ts";
import { type OpencodeHarness, startOpencode } from "./opencode-harness.ts";

const MODEL = { providerID: "scripted", modelID: "scripted-1" };

interface MessageResponse {
  info: {
    id: string;
    role: string;
    error?: { name: string; data?: Record<string, unknown> };
    finish?: string;
  };
  parts: { type: string; text?: string; tool?: string; state?: { status: string; output?: string } }[];
}

describe("scripted model driving the real opencode server", () => {
  let model: ScriptedModelServer | undefined;
  let oc: OpencodeHarness | undefined;

  const api = async <T>(method: string, path: string, body?: unknown, timeoutMs = 60_000): Promise<T> => {
    if (!oc) throw new Error("opencode not started");
    const res = await fetch(`${oc.baseUrl}${path}`, {
      method,
      headers: { ...oc.headers, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path} -> ${res.status}: ${text}`);
    return (text ? JSON.parse(text) : undefined) as T;
  };
  const newSession = async () => (await api<{ id: string }>("POST", "/session", {})).id;
  const prompt = (sessionID: string, text: string) =>
    api<MessageResponse>("POST", `/session/${sessionID}/message`, {
      parts: [{ type: "text", text }],
      model: MODEL,
    });
  const textOf = (r: MessageResponse) =>
    r.parts
      .filter((p) => p.type === "text")
      .map((p) => p.text)
      .join("");

  beforeAll(async () => {
    model = await startScriptedModel({ scenario: { rules: [] } });
    oc = await startOpencode(model.url);
  }, 60_000);

  afterAll(async () => {
    if (process.env.SCRIPTED_MODEL_DUMP && model) {
      await writeFile(process.env.SCRIPTED_MODEL_DUMP, JSON.stringify(model.requests, null, 2));
    }
    await Promise.allSettled([oc?.stop(), model?.close()]);
  }, 30_000);

  it("runs the real write tool from a tool step", async () => {
    if (!model || !oc) throw new Error("setup failed");
    const target = join(oc.repo, "notes", "hello.txt");
    const scenario: Scenario = {
      rules: [
        {
          match: "create the greeting file",
          steps: [
            { tool: "write", args: { filePath: target, content: "hello from the scripted model\n" } },
            { text: "I created notes/hello.txt.", chunkDelayMs: 5 },
          ],
        },
      ],
    };
    model.setScenario(scenario);
    const started = Date.now();
    const res = await prompt(await newSession(), "Please create the greeting file");
    const elapsed = Date.now() - started;
    expect(res.info.error, oc.output()).toBeUndefined();
    expect(await readFile(target, "utf8")).toBe("hello from the scripted model\n");
    expect(textOf(res)).toBe("I created notes/hello.txt.");
    const agentTurns = model.requests.filter((r) => r.kind === "agent");
    expect(agentTurns.map((r) => r.step)).toEqual([0, 1]);
    expect(agentTurns[0]?.tools).toEqual(expect.arrayContaining(["write", "edit", "bash"]));
    // The second request must carry the tool result back to the model.
    expect(agentTurns[1]?.messages.at(-1)?.role).toBe("tool");
    console.log(`write turn took ${elapsed} ms`);
  });

  it("runs parallel tool calls from a tools step", async () => {
    if (!model || !oc) throw new Error("setup failed");
    const repo = oc.repo;
    model.setScenario({
      rules: [
        {
          match: "two files",
          steps: [
            {
              tools: [
                { tool: "write", args: { filePath: join(repo, "a.txt"), content: "A\n" } },
                { tool: "write", args: { filePath: join(repo, "b.txt"), content: "B\n" } },
              ],
            },
          ],
        },
      ],
    });
    const before = model.requests.length;
    const res = await prompt(await newSession(), "Write two files");
    expect(res.info.error).toBeUndefined();
    expect(await readFile(join(repo, "a.txt"), "utf8")).toBe("A\n");
    expect(await readFile(join(repo, "b.txt"), "utf8")).toBe("B\n");
    expect(textOf(res)).toBe("Done.");
    const followUp = model.requests.slice(before).filter((r) => r.kind === "agent")[1];
    expect(followUp?.messages.filter((m) => m.role === "tool")).toHaveLength(2);
  });

  it("sends earlier turns as context (recall finds a codeword from turn one)", async () => {
    if (!model) throw new Error("setup failed");
    model.setScenario({
      rules: [
        { match: "remember the codeword", steps: [{ text: "Noted, I will remember it." }] },
        {
          match: "what was the codeword",
          steps: [{ recall: "codeword is ([A-Z]+-\\d+)", template: "The codeword was $1." }],
        },
      ],
    });
    const session = await newSession();
    const first = await prompt(session, "Please remember the codeword: the codeword is PELICAN-42.");
    expect(textOf(first)).toBe("Noted, I will remember it.");
    const second = await prompt(session, "What was the codeword?");
    expect(second.info.error).toBeUndefined();
    expect(textOf(second)).toBe("The codeword was PELICAN-42.");
  });

  it("turns an error step into an assistant message error", async () => {
    if (!model) throw new Error("setup failed");
    model.setScenario({
      rules: [{ match: "fail", steps: [{ error: { status: 401, message: "Invalid API key (scripted)" } }] }],
    });
    const res = await prompt(await newSession(), "This turn should fail");
    expect(res.info.error).toBeDefined();
    expect(JSON.stringify(res.info.error)).toContain("Invalid API key (scripted)");
    console.log(`401 error surfaced as ${JSON.stringify(res.info.error)}`);
  });

  it("keeps a hang step open until the turn is aborted", async () => {
    if (!model) throw new Error("setup failed");
    model.setScenario({ rules: [{ match: "hang", steps: [{ hang: true, text: "Working on it" }] }] });
    const session = await newSession();
    const before = model.requests.length;
    const pending = prompt(session, "Please hang for a while");
    const deadline = Date.now() + 20_000;
    while (!model.requests.slice(before).some((r) => r.kind === "agent") && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 500));
    await api("POST", `/session/${session}/abort`, {});
    const res = await pending;
    expect(res.info.error?.name).toBe("MessageAbortedError");
  });

  it("demo scenario writes DEMO.md with a relative path and runs bash", async () => {
    if (!model || !oc) throw new Error("setup failed");
    model.setScenario(demoScenario);
    const res = await prompt(await newSession(), "Say hi to the demo");
    expect(res.info.error).toBeUndefined();
    expect(await readFile(join(oc.repo, "DEMO.md"), "utf8")).toContain("> Say hi to the demo");
    expect(textOf(res)).toContain("scripted demo model");

    const session = await newSession();
    const bash = await prompt(session, "run something");
    expect(bash.info.error).toBeUndefined();
    // The blocking call returns only the last assistant message; the tool ran in an earlier one.
    const history = await api<MessageResponse[]>("GET", `/session/${session}/message`);
    const toolPart = history.flatMap((m) => m.parts).find((p) => p.type === "tool");
    expect(toolPart?.tool).toBe("bash");
    expect(toolPart?.state?.status).toBe("completed");
    expect(toolPart?.state?.output).toContain("hello from flotilla");
  });

  it("answers title generation without consuming scenario steps", () => {
    if (!model) throw new Error("setup failed");
    const aux = model.requests.filter((r) => r.kind === "auxiliary");
    expect(aux.length).toBeGreaterThan(0);
    expect(aux.every((r) => r.tools.length === 0 && r.reply.kind === "text")).toBe(true);
  });
});
