import { rmSync } from "node:fs";
import { performance } from "node:perf_hooks";
import type { FlotillaClient, SessionEvent } from "@flotilla/client";
import { LIVE, poll } from "./boot.ts";
import { makeRepo } from "./support.ts";

export interface ProvisionSample {
  /** POST /sessions answered (workspace made, rows written, provisioning started in the background). */
  createMs: number;
  /** First event (session.status provisioning) received over SSE. */
  firstEventMs: number;
  /** harness.state ready received over SSE: the measure this phase is about (a cold start). */
  readyMs: number;
  /** Same, from the event's own `at` (Postgres transaction time) against the request's wall clock. */
  readyAtMs: number;
  /** Server-side harness boot: `at` of harness.state starting → ready. */
  harnessBootMs: number;
  /** turn.started (OpenCode session made, prompt about to be sent) received over SSE. */
  turnStartedMs: number;
  /** OpenCode's first model request for the turn reached the scripted model (wall clock). */
  modelAskedMs: number;
  /** First text.delta of the reply received over SSE. */
  firstDeltaMs: number;
  /** turn.finished of the first (short) turn received over SSE. */
  turnFinishedMs: number;
  /** DELETE /sessions/:id?workspace=true (frees the directory's instance, removes the worktree; the
   * harness is the pool's to stop). */
  deleteMs: number;
}

/**
 * COLD provisioning: one session at a time, each in a fresh repository (a new project, so a new
 * shard), on a control plane with no warm harnesses (pool.warm = 0), and only once the pool has
 * stopped every harness of the previous sample (pool.idleMs short): each sample starts a harness
 * from nothing with nothing else competing for the cores. A session placed on a running (shared or
 * warm) harness gets harness.state ready at once; a sample without `harness.state starting` is
 * therefore refused rather than averaged in.
 */
export async function runProvisioning(
  client: FlotillaClient,
  count: number,
  signal: AbortSignal,
  /** Wall-clock time of the first agent request to the model whose prompt holds `marker`. */
  modelAsked: (marker: string) => number | undefined,
  onSample: (i: number, s: ProvisionSample) => void,
  /** Names the samples' prompts (`<label>-<i>`), by which the model's requests are found. */
  label = "bench-session",
): Promise<ProvisionSample[]> {
  const out: ProvisionSample[] = [];
  for (let i = 0; i < count; i++) {
    await poll(
      async () => ((await client.harnesses()).some((h) => LIVE.includes(h.state)) ? undefined : true),
      "the pool to stop the previous sample's harness",
      60_000,
      signal,
    );
    const repo = makeRepo();
    try {
      const s = await provisionOnce(client, repo, `${label}-${i + 1}`, modelAsked, signal);
      out.push(s);
      onSample(i, s);
    } finally {
      rmSync(repo, { recursive: true, force: true });
    }
  }
  return out;
}

async function provisionOnce(
  client: FlotillaClient,
  repo: string,
  marker: string,
  modelAsked: (marker: string) => number | undefined,
  outer: AbortSignal,
): Promise<ProvisionSample> {
  const wall0 = Date.now();
  const t0 = performance.now();
  const session = await client.sessions.create({
    repo,
    prompt: `hello from the bench (${marker})`,
    title: "bench",
  });
  const createMs = performance.now() - t0;
  const ac = new AbortController();
  const timeout = AbortSignal.timeout(120_000);
  const signal = AbortSignal.any([ac.signal, outer, timeout]);
  let firstEventMs: number | undefined;
  let readyMs: number | undefined;
  let readyAtMs: number | undefined;
  let startingAt: number | undefined;
  let harnessBootMs: number | undefined;
  let turnStartedMs: number | undefined;
  let firstDeltaMs: number | undefined;
  let turnFinishedMs: number | undefined;
  const seen: string[] = [];
  try {
    for await (const e of client.sessions.stream(session.id, { after: 0, signal })) {
      const t = performance.now() - t0;
      firstEventMs ??= t;
      seen.push(label(e));
      if (e.type === "harness.state" && e.data.state === "starting") startingAt = Date.parse(e.at);
      if (e.type === "harness.state" && e.data.state === "ready" && readyMs === undefined) {
        readyMs = t;
        readyAtMs = Date.parse(e.at) - wall0;
        if (startingAt !== undefined) harnessBootMs = Date.parse(e.at) - startingAt;
      }
      if (e.type === "turn.started") turnStartedMs ??= t;
      if (e.type === "text.delta") firstDeltaMs ??= t;
      if (e.type === "session.status" && (e.data.status === "failed" || e.data.status === "interrupted"))
        throw new Error(`session ${session.id} ${e.data.status}: ${e.data.error?.message ?? "no reason"}`);
      if (e.type === "turn.finished") {
        if (e.data.outcome !== "success")
          throw new Error(`session ${session.id} turn ${e.data.outcome}: ${e.data.error?.message ?? ""}`);
        turnFinishedMs = t;
        break;
      }
    }
  } catch (e) {
    if (timeout.aborted)
      throw new Error(`session ${session.id} did not finish in 120 s; saw ${seen.join(", ")}`);
    throw e;
  } finally {
    ac.abort();
  }
  if (readyMs === undefined || turnFinishedMs === undefined || firstEventMs === undefined)
    throw new Error(`session ${session.id}: stream ended early; saw ${seen.join(", ")}`);
  if (startingAt === undefined)
    throw new Error(
      `session ${session.id} found a running harness: not a cold start; saw ${seen.join(", ")}`,
    );
  const d0 = performance.now();
  await client.sessions.delete(session.id, { workspace: true });
  return {
    createMs,
    firstEventMs,
    readyMs,
    readyAtMs: readyAtMs ?? NaN,
    harnessBootMs: harnessBootMs ?? NaN,
    turnStartedMs: turnStartedMs ?? NaN,
    modelAskedMs: (modelAsked(marker) ?? NaN) - wall0,
    firstDeltaMs: firstDeltaMs ?? NaN,
    turnFinishedMs,
    deleteMs: performance.now() - d0,
  };
}

export const label = (e: SessionEvent) =>
  e.type === "session.status"
    ? `status:${e.data.status}`
    : e.type === "harness.state"
      ? `harness:${e.data.state}`
      : e.type;
