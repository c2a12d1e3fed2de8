import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  type ChatMessage,
  type Reply,
  type Scenario,
  type Selection,
  selectReply,
  validateScenario,
} from "./scenario.ts";

export const MODEL_ID = "scripted-1";
/** Reply to requests that are not agent turns (title generation and the like). */
export const AUXILIARY_REPLY = "Scripted session";

export interface RecordedRequest {
  time: number;
  model: string;
  stream: boolean;
  /** "agent" = had tools, answered from the scenario; "auxiliary" = no tools (e.g. title generation). */
  kind: "agent" | "auxiliary";
  messages: ChatMessage[];
  tools: string[];
  /** The bearer credential the client sent (tests check a configured key reached the provider). */
  apiKey: string | undefined;
  /** Which rule/step answered (agent requests only). */
  rule?: Selection["rule"];
  step?: number;
  reply: Reply;
}

export interface ScriptedModelServer {
  url: string;
  port: number;
  requests: RecordedRequest[];
  setScenario(s: Scenario): void;
  close(): Promise<void>;
}

export interface StartOptions {
  scenario: Scenario;
  port?: number;
  host?: string;
  logger?: (msg: string) => void;
  /** Keep every request in `requests` (tests read them); off for a long-running server (the demo, the
   * warm-up model), whose list would otherwise grow with every turn. Default true. */
  record?: boolean;
}

interface ChatRequestBody {
  max_tokens?: number;
  max_completion_tokens?: number;
  model?: string;
  stream?: boolean;
  messages?: ChatMessage[];
  tools?: { function?: { name?: string } }[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Rough token estimate: OpenCode only needs plausible numbers for its usage/cost bookkeeping. */
const tokens = (s: string) => Math.max(1, Math.ceil(s.length / 4));

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const data = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(data) });
  res.end(data);
}

function errorType(status: number): string {
  if (status === 401 || status === 403) return "authentication_error";
  if (status === 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** Splits after each space so the chunks concatenate back to the exact text. */
function textChunks(text: string): string[] {
  return text.length === 0 ? [] : text.split(/(?<= )/);
}

export async function startScriptedModel(opts: StartOptions): Promise<ScriptedModelServer> {
  let scenario = validateScenario(opts.scenario);
  const requests: RecordedRequest[] = [];
  const log = opts.logger ?? (() => {});
  const host = opts.host ?? "127.0.0.1";
  // A per-server prefix keeps ids unique across servers sharing one OpenCode session history.
  const idPrefix = randomBytes(4).toString("hex");
  let seq = 0;
  const nextId = (kind: string) => `${kind}_${idPrefix}_${++seq}`;

  /** `maxTokens`: the request's output limit, honoured as a provider does (a text answer is cut
   * there, finish_reason "length"). */
  async function streamReply(res: ServerResponse, reply: Reply, promptTokens: number, maxTokens?: number) {
    const id = nextId("chatcmpl");
    const created = Math.floor(Date.now() / 1000);
    let closed = false;
    res.on("close", () => {
      closed = true;
    });
    const send = (choice: Record<string, unknown> | null, extra: Record<string, unknown> = {}) => {
      const chunk = {
        id,
        object: "chat.completion.chunk",
        created,
        model: MODEL_ID,
        choices: choice ? [{ index: 0, ...choice }] : [],
        ...extra,
      };
      res.write(`data: ${JSON.stringify(chunk)}\n\n`);
    };
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      connection: "keep-alive",
    });
    send({ delta: { role: "assistant", content: "" }, finish_reason: null });

    let completion = "";
    let cut = false;
    if (reply.kind === "text" || reply.kind === "hang") {
      const text = reply.text ?? "";
      const delay = reply.kind === "text" ? (reply.chunkDelayMs ?? 0) : 0;
      const pieces = textChunks(text);
      for (const [i, piece] of pieces.entries()) {
        if (closed) return;
        if (maxTokens !== undefined && tokens(completion + piece) > maxTokens) {
          cut = true;
          break;
        }
        if (delay > 0 && i > 0) await sleep(delay);
        send({ delta: { content: piece }, finish_reason: null });
        completion += piece;
      }
    }
    if (reply.kind === "hang") {
      // Hold the response open; the client's abort closes the socket and ends this request.
      if (!closed) await new Promise<void>((resolve) => res.once("close", () => resolve()));
      return;
    }
    if (reply.kind === "tools") {
      reply.calls.forEach((call, index) => {
        const args = JSON.stringify(call.args);
        completion += call.tool + args;
        send({
          delta: {
            tool_calls: [
              { index, id: nextId("call"), type: "function", function: { name: call.tool, arguments: args } },
            ],
          },
          finish_reason: null,
        });
      });
    }
    if (closed) return;
    const completionTokens = tokens(completion);
    send(
      { delta: {}, finish_reason: cut ? "length" : reply.kind === "tools" ? "tool_calls" : "stop" },
      {
        usage: {
          prompt_tokens: promptTokens,
          completion_tokens: completionTokens,
          total_tokens: promptTokens + completionTokens,
        },
      },
    );
    res.end("data: [DONE]\n\n");
  }

  async function jsonReply(res: ServerResponse, reply: Reply, promptTokens: number) {
    if (reply.kind === "hang") {
      await new Promise<void>((resolve) => res.once("close", () => resolve()));
      return;
    }
    if (reply.kind === "error") return; // handled by the caller
    const text = reply.kind === "text" ? reply.text : "";
    const toolCalls =
      reply.kind === "tools"
        ? reply.calls.map((c) => ({
            id: nextId("call"),
            type: "function",
            function: { name: c.tool, arguments: JSON.stringify(c.args) },
          }))
        : undefined;
    const completionTokens = tokens(text + JSON.stringify(toolCalls ?? ""));
    sendJson(res, 200, {
      id: nextId("chatcmpl"),
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: MODEL_ID,
      choices: [
        {
          index: 0,
          message: {
            role: "assistant",
            content: text.length > 0 ? text : null,
            ...(toolCalls ? { tool_calls: toolCalls } : {}),
          },
          finish_reason: toolCalls ? "tool_calls" : "stop",
        },
      ],
      usage: {
        prompt_tokens: promptTokens,
        completion_tokens: completionTokens,
        total_tokens: promptTokens + completionTokens,
      },
    });
  }

  async function handleChat(req: IncomingMessage, res: ServerResponse) {
    let body: ChatRequestBody;
    let raw: string;
    try {
      raw = await readBody(req);
      body = JSON.parse(raw) as ChatRequestBody;
    } catch {
      sendJson(res, 400, { error: { message: "invalid JSON body", type: "invalid_request_error" } });
      return;
    }
    const messages = Array.isArray(body.messages) ? body.messages : [];
    const tools = (body.tools ?? []).map((t) => t.function?.name ?? "").filter((n) => n.length > 0);
    const stream = body.stream === true;
    const apiKey = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    const base = { time: Date.now(), model: body.model ?? "", stream, messages, tools, apiKey };
    let record: RecordedRequest;
    if (tools.length === 0) {
      record = { ...base, kind: "auxiliary", reply: { kind: "text", text: AUXILIARY_REPLY } };
    } else {
      const sel = selectReply(scenario, messages);
      record = { ...base, kind: "agent", rule: sel.rule, step: sel.step, reply: sel.reply };
    }
    if (opts.record !== false) requests.push(record);
    log(
      `chat ${record.kind} rule=${String(record.rule ?? "-")} step=${record.step ?? "-"} -> ${record.reply.kind}`,
    );

    const reply = record.reply;
    if (reply.kind === "error") {
      sendJson(res, reply.status, {
        error: { message: reply.message, type: reply.type ?? errorType(reply.status) },
      });
      return;
    }
    // As a provider counts: everything sent (system prompt and tool definitions too).
    const promptTokens = tokens(raw);
    const maxTokens = body.max_completion_tokens ?? body.max_tokens;
    if (stream) await streamReply(res, reply, promptTokens, maxTokens);
    else await jsonReply(res, reply, promptTokens);
  }

  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    if (req.method === "GET" && path.endsWith("/models")) {
      sendJson(res, 200, {
        object: "list",
        data: [{ id: MODEL_ID, object: "model", created: 0, owned_by: "flotilla" }],
      });
      return;
    }
    if (req.method === "POST" && path.endsWith("/chat/completions")) {
      handleChat(req, res).catch((err: unknown) => {
        log(`chat handler failed: ${String(err)}`);
        if (!res.headersSent) sendJson(res, 500, { error: { message: String(err), type: "server_error" } });
        else res.destroy();
      });
      return;
    }
    sendJson(res, 404, {
      error: { message: `no route ${req.method} ${path}`, type: "invalid_request_error" },
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}/v1`;

  return {
    url,
    port,
    requests,
    setScenario(s: Scenario) {
      scenario = validateScenario(s);
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Hanging responses and keep-alive sockets would otherwise keep close() pending forever.
        server.closeAllConnections();
      });
    },
  };
}
