import { rmSync } from "node:fs";
import { performance } from "node:perf_hooks";
import type { FlotillaClient } from "@flotilla/client";
import { LIVE, poll } from "./boot.ts";
import { label } from "./provision.ts";
import { makeRepo } from "./support.ts";

export interface TaskSample {
  /** POST /tasks answered. */
  submitMs: number;
  /** The task went queued → running (claimed), by the history entry's `at`. */
  claimedAtMs: number;
  /** turn.started (OpenCode session made, prompt about to be sent), by the event's `at`. */
  turnStartedAtMs: number;
  /** OpenCode's first model request for the turn reached the scripted model (its own clock). */
  modelAskedAtMs: number;
  /** First text.delta of the agent's reply, by the event's `at`: the agent is running. */
  firstDeltaAtMs: number;
  /** The same delta as this client received it over SSE. */
  firstDeltaSseMs: number;
  /** Whether the session's log shows a harness being started for it. */
  harnessStarted: boolean;
  /** Harnesses of other shards that started between submit and the first delta: the pool's
   * replacement for a warm harness just taken boots on the same cores as the measured turn. */
  otherBoots: number;
  /** The session's workspace (hot: one made ahead, checked). */
  workspaceId: string;
}

/**
 * Enqueue → agent running, one task at a time, each in a fresh repository (a new project):
 *   warm: the pool keeps `warm` ready harnesses over fresh shards; before each submit the bench
 *         waits until that many are ready, so the task's project is given one of them.
 *   cold: pool.warm = 0; before each submit the bench waits until no harness is running, so the
 *         task's session must start one.
 *   hot:  every task on one repository whose project is hot (its harness running, a warm workspace
 *         made ahead); before each submit the bench waits until a warm workspace is ready.
 * Either way the previous task's harness is left to the pool to stop (pool.idleMs short), so no
 * harness boot or teardown competes with the measured one. Times are from sending POST /tasks, on
 * this machine's wall clock; event and history times are Postgres's clock on the same machine.
 */
export async function runTaskLatency(opts: {
  client: FlotillaClient;
  mode: "warm" | "cold" | "hot";
  /** hot: every task on this one repository (a hot project), each submitted once `ready` gives the
   * ids of the warm workspaces made for it (undefined while none is ready). */
  hot?: { repo: string; takesWarm: boolean; ready: () => Promise<string[] | undefined> };
  count: number;
  warm: number;
  signal: AbortSignal;
  /** Wall-clock time of the first agent request to the model whose prompt holds `marker`. */
  modelAsked: (marker: string) => number | undefined;
  onSample: (i: number, s: TaskSample) => void;
  /** Names the tasks' prompts (`<label>-<i>`; default bench-task-<mode>). */
  label?: string;
}): Promise<TaskSample[]> {
  const { client, signal } = opts;
  const out: TaskSample[] = [];
  for (let i = 0; i < opts.count; i++) {
    const hot = opts.hot;
    const warmIds = hot
      ? await poll(hot.ready, "a warm workspace of the hot repository", 120_000, signal)
      : await poll(
          () => quiet(client, opts.warm),
          opts.mode === "warm"
            ? `${opts.warm} warm harnesses, and nothing else running`
            : "no harness running",
          120_000,
          signal,
        ).then(() => []);
    const repo = hot?.repo ?? makeRepo();
    try {
      const label = opts.label ?? `bench-task-${opts.mode}`;
      const s = await once(client, repo, `${label}-${i + 1}`, opts.modelAsked, signal);
      if (hot?.takesWarm && !warmIds.includes(s.workspaceId))
        throw new Error(`task ${i + 1} did not take a warm workspace (${warmIds.join(", ")} were ready)`);
      if (hot && s.harnessStarted) throw new Error(`task ${i + 1} of a hot project started a harness`);
      if (opts.mode === "warm" && s.harnessStarted)
        throw new Error(`task ${i + 1} started a harness although ${opts.warm} warm ones were ready`);
      if (opts.mode === "cold" && !s.harnessStarted)
        throw new Error(`task ${i + 1} found a running harness: not a cold start`);
      out.push(s);
      opts.onSample(i, s);
    } finally {
      if (!hot) rmSync(repo, { recursive: true, force: true });
    }
  }
  return out;
}

/** True when the pool's warm set (`warm` ready harnesses) is complete and nothing else holds a
 * harness (warm = 0: no harness at all); undefined otherwise, for poll(). */
export async function quiet(client: FlotillaClient, warm: number): Promise<true | undefined> {
  const hs = (await client.harnesses()).filter((h) => LIVE.includes(h.state));
  const warmReady = hs.filter((h) => h.projectId === null && h.state === "ready").length;
  return warmReady === warm && hs.length === warm ? true : undefined;
}

async function once(
  client: FlotillaClient,
  repo: string,
  marker: string,
  modelAsked: (marker: string) => number | undefined,
  outer: AbortSignal,
): Promise<TaskSample> {
  const wall0 = Date.now();
  const t0 = performance.now();
  const { task } = await client.tasks.submit({
    repo,
    prompt: `hello from the bench (${marker})`,
    maxAttempts: 1,
  });
  const submitMs = performance.now() - t0;
  const ac = new AbortController();
  const timeout = AbortSignal.timeout(120_000);
  const signal = AbortSignal.any([ac.signal, outer, timeout]);
  // The session exists only once the scheduler claimed the task; its id is on the task from then.
  const sessionId = await poll(
    async () => {
      const t = await client.tasks.get(task.id);
      if (["failed", "dead", "cancelled", "timed_out"].includes(t.state))
        throw new Error(`task ${task.id} ${t.state}: ${t.error?.message ?? ""}`);
      return t.sessionId ?? undefined;
    },
    `task ${task.id} to get a session`,
    120_000,
    signal,
    20,
  );
  let turnStartedAtMs: number | undefined;
  let firstDeltaAtMs: number | undefined;
  let firstDeltaSseMs: number | undefined;
  let harnessStarted = false;
  const seen: string[] = [];
  try {
    for await (const e of client.sessions.stream(sessionId, { after: 0, signal })) {
      const t = performance.now() - t0;
      seen.push(label(e));
      const at = Date.parse(e.at) - wall0;
      if (e.type === "harness.state" && e.data.state === "starting") harnessStarted = true;
      if (e.type === "turn.started") turnStartedAtMs ??= at;
      if (e.type === "text.delta" && firstDeltaAtMs === undefined) {
        firstDeltaAtMs = at;
        firstDeltaSseMs = t;
      }
      if (e.type === "session.status" && e.data.status === "failed")
        throw new Error(`session ${sessionId} failed: ${e.data.error?.message ?? "no reason"}`);
      if (e.type === "turn.finished") {
        if (e.data.outcome !== "success") throw new Error(`task ${task.id} turn ${e.data.outcome}`);
        break;
      }
    }
  } catch (e) {
    if (timeout.aborted) throw new Error(`task ${task.id} did not finish in 120 s; saw ${seen.join(", ")}`);
    throw e;
  } finally {
    ac.abort();
  }
  if (firstDeltaAtMs === undefined || turnStartedAtMs === undefined || firstDeltaSseMs === undefined)
    throw new Error(`task ${task.id}: no turn.started or text.delta; saw ${seen.join(", ")}`);
  // Let the attempt finish (result, release) before the next task, then drop its workspace.
  const done = await poll(
    async () => {
      const t = await client.tasks.get(task.id);
      return ["queued", "running"].includes(t.state) ? undefined : t;
    },
    `task ${task.id} to finish`,
    60_000,
    outer,
  );
  if (done.state !== "succeeded") throw new Error(`task ${task.id} ended ${done.state}`);
  const claimed = done.history?.find((h) => h.to === "running");
  const otherBoots = (await client.harnesses()).filter((h) => {
    const at = Date.parse(h.startedAt) - wall0;
    return h.projectId !== task.projectId && at >= 0 && at <= firstDeltaAtMs!;
  }).length;
  const { workspaceId } = await client.sessions.get(sessionId);
  await client.sessions.delete(sessionId, { workspace: true });
  return {
    workspaceId,
    submitMs,
    claimedAtMs: claimed ? Date.parse(claimed.at) - wall0 : NaN,
    turnStartedAtMs,
    modelAskedAtMs: (modelAsked(marker) ?? NaN) - wall0,
    firstDeltaAtMs,
    firstDeltaSseMs,
    harnessStarted,
    otherBoots,
  };
}
