import { performance } from "node:perf_hooks";
import type { FlotillaClient } from "@flotilla/client";
import type { RunningServer } from "@flotilla/server";
import { newGatewayToken } from "../packages/server/src/gateway/gateway.ts";
import { lastWord, type ModelTap } from "./model-tap.ts";
import { makeRepo, sseFrames, stats, table } from "./support.ts";

/** One streamed model call, read as it arrives. */
interface Call {
  /** Request sent → first text chunk read. */
  ttftMs: number;
  /** Per text chunk: handed on by the tap in front of the model → read here. */
  hopMs: number[];
  /** Completion tokens / (last chunk − first chunk). */
  tokensPerS: number;
}

export interface GatewayResult {
  direct: Call[];
  gateway: Call[];
}

/**
 * 8. The model gateway's cost. The same streamed completion is asked `calls` times straight from
 * the model (through the tap in front of it) and `calls` times through the gateway (gateway → tap →
 * model), interleaved so both see the same machine. Each text chunk is stamped by the tap when it
 * is handed on and again when this process reads it: the difference through the gateway minus the
 * difference without it is what the gateway adds per chunk, on one clock. The gateway is called
 * as a harness calls it, with a gateway token and a live session's id (one session is run first so
 * both exist; the token is this bench's own, set on that session's harness).
 */
export async function runGateway(opts: {
  client: FlotillaClient;
  server: RunningServer;
  tap: ModelTap;
  marker: string;
  calls: number;
  signal: AbortSignal;
  progress: (s: string) => void;
}): Promise<GatewayResult> {
  const { client, server, tap } = opts;
  const s = await client.sessions.create({ repo: makeRepo(), prompt: "hello" });
  for await (const e of client.sessions.stream(s.id, { after: 0, signal: opts.signal }))
    if (e.type === "turn.finished") break;
  const db = server.services.db;
  const { rows } = await db.query(
    `select s.opencode_id, h.id as harness from sessions s join workspaces w on w.id = s.workspace_id
       join harnesses h on h.shard_id = w.shard_id and h.state = 'ready' where s.id = $1`,
    [s.id],
  );
  const token = newGatewayToken();
  await db.query("update harnesses set gateway_token_hash = $2 where id = $1", [rows[0].harness, token.hash]);
  const opencodeSession = rows[0].opencode_id as string;

  let turn = 0;
  const call = async (url: string, headers: Record<string, string>): Promise<Call> => {
    const n = ++turn;
    const t0 = performance.now();
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({
        model: "scripted-1",
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: "user", content: `${opts.marker} ${n}` }],
        // A tool, so the scripted model answers from its scenario (the streamed text), as for an agent.
        tools: [
          { type: "function", function: { name: "noop", parameters: { type: "object", properties: {} } } },
        ],
      }),
      signal: opts.signal,
    });
    if (!res.ok || !res.body) throw new Error(`model call ${res.status}: ${await res.text()}`);
    const hops: number[] = [];
    let first: number | undefined;
    let last = t0;
    let tokens = 0;
    for await (const f of sseFrames(res.body as unknown as AsyncIterable<Uint8Array>, () =>
      performance.now(),
    )) {
      if (!f.data.startsWith("{")) continue;
      const doc = JSON.parse(f.data) as {
        choices?: { delta?: { content?: string } }[];
        usage?: { completion_tokens?: number };
      };
      if (doc.usage?.completion_tokens) tokens = doc.usage.completion_tokens;
      const content = doc.choices?.[0]?.delta?.content;
      const word = content ? lastWord(content) : undefined;
      if (word === undefined) continue;
      first ??= f.t;
      last = f.t;
      const sent = tap.sent(n, word);
      if (sent !== undefined) hops.push(f.t - sent);
    }
    return {
      ttftMs: (first ?? last) - t0,
      hopMs: hops,
      tokensPerS: first !== undefined && last > first ? tokens / ((last - first) / 1000) : 0,
    };
  };

  const direct: Call[] = [];
  const gateway: Call[] = [];
  for (let i = 0; i < opts.calls; i++) {
    direct.push(await call(`${tap.url}/chat/completions`, {}));
    gateway.push(
      await call(`${server.services.config.gateway.url}/gateway/scripted/chat/completions`, {
        authorization: `Bearer ${token.token}`,
        "x-session-affinity": opencodeSession,
      }),
    );
    if ((i + 1) % 5 === 0) opts.progress(`8. gateway: ${i + 1}/${opts.calls} pairs of calls`);
  }
  return { direct, gateway };
}

export function reportGateway(out: (s?: string) => void, g: GatewayResult | undefined): void {
  if (!g) return;
  const hops = (xs: Call[]) => xs.flatMap((c) => c.hopMs);
  const d = stats(hops(g.direct));
  const w = stats(hops(g.gateway));
  out(
    table(`8. The model gateway (${g.gateway.length} calls each way, interleaved)`, [
      ["first text chunk, direct", stats(g.direct.map((c) => c.ttftMs))],
      ["first text chunk, through the gateway  <==", stats(g.gateway.map((c) => c.ttftMs))],
      ["per chunk: model → client, direct", d],
      ["per chunk: model → client, through the gateway", w],
    ]),
  );
  const tps = (xs: Call[]) => stats(xs.map((c) => c.tokensPerS)).p50;
  out(
    `   added per chunk: p50 ${(w.p50 - d.p50).toFixed(2)} ms, p99 ${(w.p99 - d.p99).toFixed(2)} ms; ` +
      `tokens/s p50: direct ${tps(g.direct)}, through the gateway ${tps(g.gateway)} (the scripted model's pace sets both)`,
  );
  out("   through the gateway = token check, session binding, key swap, usage metering, the call's record.");
  out();
}
