import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import { parse as parseYaml } from "yaml";

export interface ToolCallSpec {
  tool: string;
  args: Record<string, unknown>;
}

export type ScenarioStep =
  | { text: string; chunkDelayMs?: number }
  | ToolCallSpec
  | { tools: ToolCallSpec[] }
  | { recall: string; template?: string }
  | { hang: true; text?: string }
  | { error: { status: number; message: string; type?: string } };

export interface ScenarioRule {
  /** Case-insensitive regex tested against the latest user message; absent = matches anything. */
  match?: string;
  steps: ScenarioStep[];
}

export interface Scenario {
  rules: ScenarioRule[];
  default?: ScenarioStep[];
}

/** The subset of an OpenAI chat message this server reads. */
export interface ChatMessage {
  role: string;
  content?: unknown;
  tool_calls?: { id?: string; function?: { name?: string; arguments?: string } }[];
  tool_call_id?: string;
}

/** What to send back, independent of streaming vs. plain JSON. */
export type Reply =
  | { kind: "text"; text: string; chunkDelayMs?: number }
  | { kind: "tools"; calls: ToolCallSpec[] }
  | { kind: "hang"; text?: string }
  | { kind: "error"; status: number; message: string; type?: string };

export interface Selection {
  reply: Reply;
  /** Index into `scenario.rules`, or "default" / "none". */
  rule: number | "default" | "none";
  step: number;
}

/** Placeholder in tool args and texts, replaced by the latest user message (lets static scenarios quote the prompt). */
export const PROMPT_PLACEHOLDER = "{{prompt}}";

/** Flattens OpenAI content (string, or array of parts) into plain text; non-text parts are skipped. */
export function contentText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  const texts: string[] = [];
  for (const part of content) {
    if (typeof part === "string") texts.push(part);
    else if (part && typeof part === "object" && typeof (part as { text?: unknown }).text === "string") {
      texts.push((part as { text: string }).text);
    }
  }
  return texts.join("\n");
}

/** All searchable text of a message, tool-call arguments included (a recall may target what a tool was told). */
function messageText(m: ChatMessage): string {
  const parts = [contentText(m.content)];
  for (const call of m.tool_calls ?? []) parts.push(call.function?.arguments ?? "");
  return parts.filter((p) => p.length > 0).join("\n");
}

function latestUserIndex(messages: ChatMessage[]): number {
  for (let i = messages.length - 1; i >= 0; i--) if (messages[i]?.role === "user") return i;
  return -1;
}

function substitutePrompt<T>(value: T, prompt: string): T {
  if (typeof value === "string") return value.split(PROMPT_PLACEHOLDER).join(prompt) as T;
  if (Array.isArray(value)) return value.map((v) => substitutePrompt(v, prompt)) as T;
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = substitutePrompt(v, prompt);
    return out as T;
  }
  return value;
}

function recall(messages: ChatMessage[], userIdx: number, pattern: string, template: string): string {
  const re = new RegExp(pattern, "i");
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (!m || i === userIdx) continue;
    const found = re.exec(messageText(m));
    if (found) return template.split("$1").join(found[1] ?? found[0]);
  }
  return "I do not remember.";
}

function stepToReply(step: ScenarioStep, messages: ChatMessage[], userIdx: number, prompt: string): Reply {
  if ("error" in step) return { kind: "error", ...step.error };
  if ("hang" in step) return { kind: "hang", text: step.text };
  if ("recall" in step)
    return { kind: "text", text: recall(messages, userIdx, step.recall, step.template ?? "$1") };
  if ("tools" in step) return { kind: "tools", calls: substitutePrompt(step.tools, prompt) };
  if ("tool" in step)
    return { kind: "tools", calls: [substitutePrompt({ tool: step.tool, args: step.args }, prompt)] };
  return { kind: "text", text: substitutePrompt(step.text, prompt), chunkDelayMs: step.chunkDelayMs };
}

/**
 * Picks the reply for an agent turn. The step is the number of assistant messages after the latest
 * user message, so it is derived from the request alone: retries and concurrent sessions stay
 * deterministic without server-side state.
 */
export function selectReply(scenario: Scenario, messages: ChatMessage[]): Selection {
  const userIdx = latestUserIndex(messages);
  const prompt = userIdx >= 0 ? contentText(messages[userIdx]?.content) : "";
  const step = messages.slice(userIdx + 1).filter((m) => m.role === "assistant").length;

  let rule: Selection["rule"] = "none";
  let steps: ScenarioStep[] | undefined;
  const ruleIdx = scenario.rules.findIndex(
    (r) => r.match === undefined || new RegExp(r.match, "i").test(prompt),
  );
  if (ruleIdx >= 0) {
    rule = ruleIdx;
    steps = scenario.rules[ruleIdx]?.steps;
  } else if (scenario.default) {
    rule = "default";
    steps = scenario.default;
  }
  if (!steps) return { rule, step, reply: { kind: "text", text: "No scripted reply for this prompt." } };
  const chosen = steps[step];
  if (!chosen) return { rule, step, reply: { kind: "text", text: "Done." } };
  return { rule, step, reply: stepToReply(chosen, messages, userIdx, prompt) };
}

function isStep(s: unknown): s is ScenarioStep {
  if (!s || typeof s !== "object") return false;
  const o = s as Record<string, unknown>;
  return (
    typeof o.text === "string" ||
    typeof o.tool === "string" ||
    Array.isArray(o.tools) ||
    typeof o.recall === "string" ||
    o.hang === true ||
    (typeof o.error === "object" && o.error !== null)
  );
}

/** Throws with a pointer to the bad entry, so a typo in a scenario file fails at load, not mid-test. */
export function validateScenario(value: unknown, source = "scenario"): Scenario {
  const s = value as Partial<Scenario> | null;
  if (!s || typeof s !== "object" || !Array.isArray(s.rules))
    throw new Error(`${source}: expected { rules: [...] }`);
  s.rules.forEach((r, i) => {
    if (!r || !Array.isArray(r.steps)) throw new Error(`${source}: rules[${i}].steps must be an array`);
    if (r.match !== undefined) new RegExp(r.match, "i");
    r.steps.forEach((st, j) => {
      if (!isStep(st)) throw new Error(`${source}: rules[${i}].steps[${j}] is not a known step`);
    });
  });
  if (s.default !== undefined) {
    if (!Array.isArray(s.default)) throw new Error(`${source}: default must be an array of steps`);
    s.default.forEach((st, j) => {
      if (!isStep(st)) throw new Error(`${source}: default[${j}] is not a known step`);
    });
  }
  return s as Scenario;
}

export async function loadScenario(path: string): Promise<Scenario> {
  const raw = await readFile(path, "utf8");
  const data = extname(path).toLowerCase() === ".json" ? JSON.parse(raw) : parseYaml(raw);
  return validateScenario(data, path);
}

/** For `npm start` without a provider key: shows real tools running without any network. */
export const demoScenario: Scenario = {
  rules: [
    {
      match: "\\b(run|bash|command)",
      steps: [
        { tool: "bash", args: { command: "echo hello from flotilla", description: "Print a greeting" } },
        {
          text: "I ran `echo hello from flotilla` with the bash tool. (This is Flotilla's scripted demo model.)",
        },
      ],
    },
    {
      steps: [
        {
          tool: "write",
          args: {
            filePath: "DEMO.md",
            content: `# Flotilla demo\n\nWritten by the scripted demo model in answer to:\n\n> ${PROMPT_PLACEHOLDER}\n\nConfigure a real provider key to get real answers.\n`,
          },
        },
        {
          text: "I wrote DEMO.md quoting your prompt. This is Flotilla's scripted demo model, not a real LLM: configure a provider key for real answers.",
        },
      ],
    },
  ],
};
