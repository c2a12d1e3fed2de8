import { describe, expect, it } from "vitest";
import { UsageMeter } from "../src/gateway/usage.ts";

/**
 * The gateway's metering of the answer shapes it passes through. The scripted model speaks only
 * OpenAI chat completions; these are the other providers' documented stream and body shapes, fed
 * in chunks split at awkward places (as a network delivers them).
 */
const enc = new TextEncoder();

function meter(sse: boolean, text: string, cut = 7) {
  const m = new UsageMeter(sse);
  for (let i = 0; i < text.length; i += cut) m.feed(enc.encode(text.slice(i, i + cut)));
  return m.end();
}

const sse = (events: [string | undefined, unknown][]) =>
  events
    .map(([event, data]) => `${event ? `event: ${event}\n` : ""}data: ${JSON.stringify(data)}\n\n`)
    .join("");

describe("gateway usage metering", () => {
  it("OpenAI chat completions: the final chunk's usage, cached tokens included; [DONE] ignored", () => {
    const text = `${sse([
      [undefined, { choices: [{ delta: { content: "hi" } }] }],
      [
        undefined,
        {
          choices: [],
          usage: { prompt_tokens: 120, completion_tokens: 7, prompt_tokens_details: { cached_tokens: 100 } },
        },
      ],
    ])}data: [DONE]\n\n`;
    expect(meter(true, text)).toEqual({ inputTokens: 120, outputTokens: 7, cachedTokens: 100 });
  });

  it("Anthropic Messages: input (and cache reads) from message_start, output from the last message_delta", () => {
    const text = sse([
      [
        "message_start",
        {
          type: "message_start",
          message: { usage: { input_tokens: 50, output_tokens: 1, cache_read_input_tokens: 30 } },
        },
      ],
      ["content_block_delta", { type: "content_block_delta", delta: { type: "text_delta", text: "hello" } }],
      ["message_delta", { type: "message_delta", usage: { output_tokens: 12 } }],
      ["message_delta", { type: "message_delta", usage: { output_tokens: 15 } }],
      ["message_stop", { type: "message_stop" }],
    ]);
    expect(meter(true, text, 5)).toEqual({ inputTokens: 50, outputTokens: 15, cachedTokens: 30 });
  });

  it("OpenAI Responses API: response.completed's usage", () => {
    const text = sse([
      ["response.output_text.delta", { type: "response.output_text.delta", delta: "x" }],
      [
        "response.completed",
        {
          type: "response.completed",
          response: {
            usage: { input_tokens: 80, output_tokens: 9, input_tokens_details: { cached_tokens: 64 } },
          },
        },
      ],
    ]);
    expect(meter(true, text, 3)).toEqual({ inputTokens: 80, outputTokens: 9, cachedTokens: 64 });
  });

  it("Gemini: usageMetadata of the last chunk; a plain JSON body read whole at the end", () => {
    const stream = sse([
      [undefined, { candidates: [], usageMetadata: { promptTokenCount: 10, candidatesTokenCount: 2 } }],
      [
        undefined,
        {
          candidates: [],
          usageMetadata: { promptTokenCount: 10, candidatesTokenCount: 6, cachedContentTokenCount: 4 },
        },
      ],
    ]);
    expect(meter(true, stream)).toEqual({ inputTokens: 10, outputTokens: 6, cachedTokens: 4 });
    const body = JSON.stringify({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 4 } });
    expect(meter(false, body, 2)).toEqual({ inputTokens: 3, outputTokens: 4, cachedTokens: 0 });
  });

  it("an answer with no usage (or not JSON) counts nothing rather than failing", () => {
    expect(meter(true, "data: not json\n\n")).toEqual({ inputTokens: 0, outputTokens: 0, cachedTokens: 0 });
    expect(meter(false, "<html>bad gateway</html>")).toEqual({
      inputTokens: 0,
      outputTokens: 0,
      cachedTokens: 0,
    });
  });
});
