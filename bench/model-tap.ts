import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";

/**
 * A pass-through HTTP proxy in front of the scripted model that stamps, with performance.now() in
 * this process, the moment each streamed text chunk of a turn is handed on to the harness. With it
 * a delta's whole road is measurable on one clock: model chunk → OpenCode (through the sandbox's
 * egress bridge, if any) → the harness's SSE (through its API bridge) → Flotilla → a client. The
 * harness's own SSE, as read from outside, already went through the API bridge, so
 * t_flotilla − t_direct cannot show what the bridges cost; chunk → client can.
 *
 * A turn is known by the highest `<marker> <n>` in the request's messages (a session's history holds
 * its earlier turns' prompts, with smaller n); a chunk by the number of the last `word<k>` in it.
 */
export interface ModelTap {
  url: string;
  /** When the chunk ending with word `word` of turn `turn` was passed on, or undefined. */
  sent(turn: number, word: number): number | undefined;
  close(): Promise<void>;
}

export async function startModelTap(upstream: string, marker: string): Promise<ModelTap> {
  const target = new URL(upstream);
  const stamps = new Map<string, number>();
  const turnOf = new RegExp(`${marker} (\\d+)`, "g");
  const server = createServer((req, res) => {
    const body: Buffer[] = [];
    req.on("data", (c: Buffer) => body.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(body);
      const turns = [...raw.toString("utf8").matchAll(turnOf)].map((m) => Number(m[1]));
      const turn = turns.length ? Math.max(...turns) : undefined;
      const up = request(
        {
          host: target.hostname,
          port: target.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: target.host },
        },
        (upRes) => {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          let buf = "";
          upRes.on("data", (chunk: Buffer) => {
            res.write(chunk);
            if (turn === undefined) return;
            const t = performance.now();
            buf += chunk.toString("utf8");
            let end = buf.indexOf("\n\n");
            while (end >= 0) {
              const frame = buf.slice(0, end);
              buf = buf.slice(end + 2);
              end = buf.indexOf("\n\n");
              const data = frame.startsWith("data: ") ? frame.slice(6) : "";
              if (!data.startsWith("{")) continue;
              const content = (JSON.parse(data) as { choices?: { delta?: { content?: string } }[] })
                .choices?.[0]?.delta?.content;
              const word = content ? lastWord(content) : undefined;
              if (word !== undefined) stamps.set(`${turn}:${word}`, t);
            }
          });
          upRes.on("end", () => res.end());
          upRes.on("error", () => res.destroy());
        },
      );
      up.on("error", (e) => {
        if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
        res.end(`model tap: ${e.message}`);
      });
      // The harness gave up (a turn aborted): stop the upstream reply too.
      res.on("close", () => up.destroy());
      up.end(raw);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}${target.pathname}`,
    sent: (turn, word) => stamps.get(`${turn}:${word}`),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The number of the last `word<k>` in a piece of the streamed text, or undefined. */
export function lastWord(text: string): number | undefined {
  const m = /word(\d+)\s*$/.exec(text);
  return m ? Number(m[1]) : undefined;
}
