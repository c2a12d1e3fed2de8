import { createParser, type EventSourceMessage } from "eventsource-parser";

/** What one model call used, read off the provider's answer as it streams past. */
export interface Usage {
  inputTokens: number;
  outputTokens: number;
  cachedTokens: number;
}

type Json = Record<string, unknown>;
const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : 0);
const obj = (v: unknown): Json | undefined =>
  v && typeof v === "object" && !Array.isArray(v) ? (v as Json) : undefined;

/**
 * Folds one JSON document of a provider's answer into the running usage. The shapes: OpenAI chat
 * completions (`usage.prompt_tokens`, a final stream chunk with `usage`), the OpenAI Responses API
 * (`response.usage.input_tokens` on `response.completed`), Anthropic Messages (`message_start`
 * carries input tokens, `message_delta` the output so far) and Gemini (`usageMetadata`).
 */
export function foldUsage(u: Usage, doc: Json): void {
  const usage = obj(doc.usage) ?? obj(obj(doc.response)?.usage) ?? obj(obj(doc.message)?.usage);
  if (usage) {
    if ("prompt_tokens" in usage || "completion_tokens" in usage) {
      u.inputTokens = num(usage.prompt_tokens);
      u.outputTokens = num(usage.completion_tokens);
      u.cachedTokens = num(obj(usage.prompt_tokens_details)?.cached_tokens);
    } else {
      // Anthropic reports input (and cache reads) on message_start and cumulative output on each
      // message_delta; the Responses API reports all of it once.
      if ("input_tokens" in usage) u.inputTokens = num(usage.input_tokens);
      if ("output_tokens" in usage) u.outputTokens = num(usage.output_tokens);
      const cached =
        num(usage.cache_read_input_tokens) || num(obj(usage.input_tokens_details)?.cached_tokens);
      if (cached) u.cachedTokens = cached;
    }
  }
  const gemini = obj(doc.usageMetadata);
  if (gemini) {
    u.inputTokens = num(gemini.promptTokenCount);
    u.outputTokens = num(gemini.candidatesTokenCount);
    u.cachedTokens = num(gemini.cachedContentTokenCount);
  }
}

/**
 * A meter for one answer: chunks go in as they pass through to the harness (nothing is held
 * back), and `usage` holds what the provider reported. A server-sent event stream is parsed with
 * eventsource-parser; any other body is kept (up to a limit) and read as JSON at the end.
 */
export class UsageMeter {
  readonly usage: Usage = { inputTokens: 0, outputTokens: 0, cachedTokens: 0 };
  private readonly parser;
  private readonly decoder = new TextDecoder();
  private body = "";
  private static readonly MAX_JSON = 4 * 1024 * 1024;

  constructor(private readonly sse: boolean) {
    this.parser = createParser({ onEvent: (e: EventSourceMessage) => this.onData(e.data) });
  }

  private onData(data: string): void {
    if (!data || data === "[DONE]") return;
    try {
      const doc = obj(JSON.parse(data));
      if (doc) foldUsage(this.usage, doc);
    } catch {
      // Not JSON: nothing to count in it.
    }
  }

  feed(chunk: Uint8Array): void {
    const text = this.decoder.decode(chunk, { stream: true });
    if (this.sse) this.parser.feed(text);
    else if (this.body.length < UsageMeter.MAX_JSON) this.body += text;
  }

  end(): Usage {
    if (!this.sse) this.onData(this.body + this.decoder.decode());
    return this.usage;
  }
}
