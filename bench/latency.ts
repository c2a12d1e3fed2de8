import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { FlotillaClient } from "@flotilla/client";
import type { RunningServer } from "@flotilla/server";
import { lastWord } from "./model-tap.ts";
import { label } from "./provision.ts";
import { makeRepo, sseFrames, time } from "./support.ts";

/** The prompt the scenario answers with the long streamed text (see run.ts). */
export const STREAM_PROMPT = "bench-stream";

export interface LatencyResult {
  /** t_flotilla − t_direct per matched text delta: what Flotilla adds end to end. */
  added: number[];
  /** t_bus − t_direct: harness frame → event committed and published in-process (ingest + DB tx). */
  ingest: number[];
  /** t_flotilla − t_bus: in-process publish → event parsed from Flotilla's SSE (fan-out + HTTP). */
  fanout: number[];
  /** With a model tap only: model chunk passed on → the harness's SSE, as read from outside
   * (OpenCode's own work, plus the sandbox's egress and API bridges if any). */
  modelToDirect: number[];
  /** With a model tap only: model chunk passed on → Flotilla's SSE (the whole road). */
  modelToClient: number[];
  directDeltas: number;
  flotillaDeltas: number;
  matched: number;
  /** Same part and offset on both sides but different text: would be a translation bug. */
  textMismatch: number;
  turnMs: number[];
  /** Idle micro-measures on the server's own pool, to attribute the ingest share. */
  pingMs: number[];
  notifyMs: number[];
  appendMs: number[];
  /** One-row insert, autocommit, with synchronous_commit on (the default) and off. */
  commitSyncMs: number[];
  commitAsyncMs: number[];
}

const partOf = (key: string) => key.slice(0, key.lastIndexOf("@"));

interface Seen {
  t: number;
  text: string;
  /** The streamed turn (its prompt's number) under way when the delta arrived; 0 = the warm-up. */
  turn: number;
}

/** Per part, the running character offset: a delta is keyed by where it starts in its part. */
class Deltas {
  readonly at = new Map<string, Seen>();
  private readonly offset = new Map<string, number>();
  add(t: number, partId: string, text: string, turn = 0): void {
    const off = this.offset.get(partId) ?? 0;
    this.offset.set(partId, off + text.length);
    this.at.set(`${partId}@${off}`, { t, text, turn });
  }
}

/**
 * Streams long text turns and stamps every text delta three times, all with performance.now() in
 * this process: when the harness's own SSE delivers it (a direct subscription, as Flotilla's
 * ingest has), when Flotilla publishes it on its in-process bus (after the commit), and when
 * Flotilla's SSE delivers it to a client.
 */
export async function runLatency(opts: {
  client: FlotillaClient;
  server: RunningServer;
  home: string;
  turns: number;
  signal: AbortSignal;
  progress: (msg: string) => void;
  /** The number of the first streamed turn's prompt (default 1): unique across calls sharing a tap. */
  firstTurn?: number;
  /** When the model handed on the chunk ending with word `word` of turn `turn` (a model tap). */
  modelSent?: (turn: number, word: number) => number | undefined;
  /** The idle database micro-measures (default true). */
  micro?: boolean;
}): Promise<LatencyResult> {
  const { client, server } = opts;
  const firstTurn = opts.firstTurn ?? 1;
  let turn = 0;
  const repo = makeRepo();
  const ac = new AbortController();
  const signal = AbortSignal.any([ac.signal, opts.signal]);
  const direct = new Deltas();
  const flotilla = new Deltas();
  const bus = new Deltas();
  const finished: string[] = [];
  const seen: string[] = [];
  let failure: Error | undefined;
  let wake: () => void = () => {};
  const changed = () => wake();
  /** Resolves when check() holds: re-checked on every stream event (the timer only bounds the wait). */
  const until = async (check: () => boolean, what: string, ms: number) => {
    const deadline = AbortSignal.timeout(ms);
    while (!check()) {
      if (failure) throw failure;
      if (deadline.aborted)
        throw new Error(`timed out waiting for ${what}; saw ${seen.slice(-20).join(", ")}`);
      signal.throwIfAborted();
      await new Promise<void>((r) => {
        const timer = setTimeout(r, 250);
        wake = () => {
          clearTimeout(timer);
          r();
        };
      });
    }
    if (failure) throw failure;
  };

  let sessionId: string | undefined;
  const loops: Promise<void>[] = [];
  try {
    const session = await opts.client.sessions.create({ repo, prompt: "warm up", title: "bench latency" });
    sessionId = session.id;
    const unsubscribe = server.services.bus.subscribe(session.id, (e) => {
      if (e.type === "text.delta") bus.add(performance.now(), e.data.partId, e.data.delta);
    });
    signal.addEventListener("abort", unsubscribe, { once: true });

    // Flotilla's stream stays open from the first event to the last turn, so it is live (not a
    // replay) by the time any measured delta is produced.
    loops.push(
      (async () => {
        for await (const e of client.sessions.stream(session.id, { after: 0, signal })) {
          const t = performance.now();
          seen.push(label(e));
          if (e.type === "text.delta") flotilla.add(t, e.data.partId, e.data.delta, turn);
          else if (e.type === "turn.finished") finished.push(e.data.outcome);
          else if (e.type === "session.status" && ["failed", "interrupted"].includes(e.data.status))
            failure = new Error(`session ${e.data.status}: ${e.data.error?.message ?? "no reason"}`);
          changed();
        }
      })().catch((e) => {
        if (!signal.aborted) failure = e as Error;
      }),
    );
    // A fresh harness's first turn: OpenCode prepares for a long while before it asks the model, a
    // minute or more on oversubscribed cores.
    await until(() => finished.length >= 1, "the warm-up turn", 120_000);

    const h = (await client.harnesses()).find((x) => x.shardId === session.shardId && x.state === "ready");
    if (!h?.url) throw new Error(`no ready harness for shard ${session.shardId}`);
    const password = readFileSync(join(opts.home, "harnesses", h.id, "password"), "utf8").trim();
    let connected = false;
    const res = await fetch(`${h.url}/global/event`, {
      headers: {
        authorization: `Basic ${Buffer.from(`opencode:${password}`).toString("base64")}`,
        accept: "text/event-stream",
      },
      signal,
    });
    if (!res.ok || !res.body) throw new Error(`harness event stream answered ${res.status}`);
    loops.push(
      (async () => {
        for await (const f of sseFrames(res.body as unknown as AsyncIterable<Uint8Array>, () =>
          performance.now(),
        )) {
          const frame = JSON.parse(f.data) as {
            payload?: { type: string; properties: Record<string, string> };
          };
          const p =
            frame.payload ?? (frame as unknown as { type: string; properties: Record<string, string> });
          if (p.type === "server.connected") connected = true;
          else if (p.type === "message.part.delta" && p.properties.field === "text")
            direct.add(f.t, p.properties.partID ?? "", p.properties.delta ?? "", turn);
          changed();
        }
      })().catch((e) => {
        if (!signal.aborted) failure = e as Error;
      }),
    );
    await until(() => connected, "the harness stream to connect", 10_000);

    const turnMs: number[] = [];
    for (let i = 0; i < opts.turns; i++) {
      const before = finished.length;
      const t0 = performance.now();
      turn = firstTurn + i;
      await client.sessions.send(session.id, { text: `${STREAM_PROMPT} ${turn}` });
      await until(() => finished.length > before, `streamed turn ${i + 1}`, 90_000);
      if (finished.at(-1) !== "success") throw new Error(`streamed turn ${i + 1} ended ${finished.at(-1)}`);
      turnMs.push(performance.now() - t0);
      opts.progress(
        `turn ${i + 1}/${opts.turns}: ${Math.round(turnMs.at(-1)!)} ms, ${direct.at.size} deltas so far`,
      );
    }
    ac.abort();
    await Promise.allSettled(loops);

    const added: number[] = [];
    const ingest: number[] = [];
    const fanout: number[] = [];
    const modelToDirect: number[] = [];
    const modelToClient: number[] = [];
    /** When the model handed on the last chunk this delta needed. */
    const sentAt = (s: Seen) => {
      const word = lastWord(s.text);
      return word === undefined || s.turn === 0 ? undefined : opts.modelSent?.(s.turn, word);
    };
    let textMismatch = 0;
    for (const [key, d] of direct.at) {
      const f = flotilla.at.get(key);
      if (!f) continue;
      if (f.text !== d.text) textMismatch++;
      added.push(f.t - d.t);
      const sent = sentAt(d);
      if (sent !== undefined) {
        modelToDirect.push(d.t - sent);
        modelToClient.push(f.t - sent);
      }
      const b = bus.at.get(key);
      if (b) {
        ingest.push(b.t - d.t);
        fanout.push(f.t - b.t);
      }
    }

    const micro =
      opts.micro === false
        ? { pingMs: [], notifyMs: [], appendMs: [], commitSyncMs: [], commitAsyncMs: [] }
        : await microMeasures(server, session.id);
    const measuredParts = new Set([...direct.at.keys()].map(partOf));

    return {
      added,
      ingest,
      fanout,
      modelToDirect,
      modelToClient,
      directDeltas: direct.at.size,
      flotillaDeltas: [...flotilla.at.keys()].filter((k) => measuredParts.has(partOf(k))).length,
      matched: added.length,
      textMismatch,
      turnMs,
      ...micro,
    };
  } finally {
    ac.abort();
    await Promise.allSettled(loops);
    if (sessionId) await client.sessions.delete(sessionId, { workspace: true }).catch(() => {});
    rmSync(repo, { recursive: true, force: true });
  }
}

/**
 * What one delta costs on the serialized ingest path, measured idle on the server's own pool: a
 * round trip, a notify, the real EventLog.append (into the bench session's log, deleted right
 * after), and a bare commit with and without waiting for the WAL flush, which isolates the fsync.
 */
async function microMeasures(server: RunningServer, sessionId: string) {
  const db = server.services.db;
  const pingMs = await time(200, () => db.query("select 1"));
  const notifyMs = await time(200, () => db.query("select pg_notify('flotilla_bench', 'x')"));
  const data = { messageId: "msg_bench", partId: "prt_bench", delta: "word " };
  const appendMs = await time(200, () =>
    server.services.events.append(sessionId, [{ type: "text.delta", data }]),
  );
  // A scratch table in the bench's throwaway database; session settings are reset before release.
  const c = await db.connect();
  try {
    await c.query("create table bench_commit_probe (v text)");
    const insert = () => c.query("insert into bench_commit_probe values ('x')");
    const commitSyncMs = await time(200, insert);
    await c.query("set synchronous_commit = off");
    const commitAsyncMs = await time(200, insert);
    await c.query("reset synchronous_commit");
    await c.query("drop table bench_commit_probe");
    return { pingMs, notifyMs, appendMs, commitSyncMs, commitAsyncMs };
  } finally {
    c.release();
  }
}

/** Several runs' results as one: every per-delta and per-turn sample, the counts summed. */
export function mergeLatency(rs: LatencyResult[]): LatencyResult {
  const all = <K extends keyof LatencyResult>(k: K) => rs.flatMap((r) => r[k] as number[]);
  const sum = (k: "directDeltas" | "flotillaDeltas" | "matched" | "textMismatch") =>
    rs.reduce((a, r) => a + r[k], 0);
  return {
    added: all("added"),
    ingest: all("ingest"),
    fanout: all("fanout"),
    modelToDirect: all("modelToDirect"),
    modelToClient: all("modelToClient"),
    directDeltas: sum("directDeltas"),
    flotillaDeltas: sum("flotillaDeltas"),
    matched: sum("matched"),
    textMismatch: sum("textMismatch"),
    turnMs: all("turnMs"),
    pingMs: all("pingMs"),
    notifyMs: all("notifyMs"),
    appendMs: all("appendMs"),
    commitSyncMs: all("commitSyncMs"),
    commitAsyncMs: all("commitAsyncMs"),
  };
}
