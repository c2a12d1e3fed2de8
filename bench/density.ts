import { rmSync } from "node:fs";
import type { FlotillaClient } from "@flotilla/client";
import { poll } from "./boot.ts";
import { label } from "./provision.ts";
import { makeRepo } from "./support.ts";

/** The prompt the scenario answers with a little text and then a reply that never ends (run.ts). */
export const HANG_PROMPT = "bench-hang";

export interface DensityResult {
  workspacesPerHarness: number;
  sessions: number;
  harnesses: number;
  /** Sum of the ready harnesses' sampled RSS (process group: server and tool children). */
  rssBytes: number;
  rssPerHarnessBytes: number[];
  sessionsPerGiB: number;
  /** This process (control plane, bench client, scripted model) while the sessions ran. */
  controlPlaneRssBytes: number;
  /** From POST /sessions (all at once) until every session streamed its first delta. */
  allStreamingMs: number;
}

/**
 * M sessions of one project (one repository), created at once, each stuck mid-turn after its
 * first delta (a model reply that never ends), so every harness holds all its sessions live. Once
 * all have streamed, the pool's next sample of every ready harness is summed: the pool samples
 * while sessions are active, so the figure is the memory a loaded harness holds, not an idle one.
 */
export async function runDensity(opts: {
  client: FlotillaClient;
  sessions: number;
  workspacesPerHarness: number;
  signal: AbortSignal;
  progress: (msg: string) => void;
}): Promise<DensityResult> {
  const { client, signal } = opts;
  const repo = makeRepo();
  const ids: string[] = [];
  try {
    const t0 = Date.now();
    const created = await Promise.all(
      Array.from({ length: opts.sessions }, (_, i) =>
        client.sessions.create({ repo, prompt: `${HANG_PROMPT} ${i + 1}`, title: `bench density ${i + 1}` }),
      ),
    );
    ids.push(...created.map((s) => s.id));
    const projectId = created[0]!.projectId;
    await Promise.all(ids.map((id) => firstDelta(client, id, signal)));
    const allStreamingMs = Date.now() - t0;
    const streamedAt = Date.now();
    opts.progress(`density ${opts.workspacesPerHarness}/harness: all ${ids.length} streaming`);

    const mine = async () =>
      (await client.harnesses()).filter((h) => h.projectId === projectId && h.state === "ready");
    // A sample taken before the sessions streamed would undercount: wait for every harness's
    // sample to change from what it was when they all streamed (the pool rewrites it each tick;
    // 10 s covers the unlikely sample that comes out byte-for-byte the same).
    const before = new Map((await mine()).map((h) => [h.id, h.rssBytes]));
    const hs = await poll(
      async () => {
        const now = await mine();
        const fresh = now.every(
          (h) =>
            h.rssBytes !== null &&
            h.activeSessions > 0 &&
            (h.rssBytes !== before.get(h.id) || Date.now() - streamedAt > 10_000),
        );
        const active = now.reduce((a, h) => a + h.activeSessions, 0);
        return fresh && active === ids.length ? now : undefined;
      },
      "the pool to sample every harness with its sessions active",
      60_000,
      signal,
      200,
    );
    const controlPlaneRssBytes = process.memoryUsage().rss;
    const rssPerHarnessBytes = hs.map((h) => h.rssBytes ?? 0);
    const rssBytes = rssPerHarnessBytes.reduce((a, b) => a + b, 0);
    return {
      workspacesPerHarness: opts.workspacesPerHarness,
      sessions: ids.length,
      harnesses: hs.length,
      rssBytes,
      rssPerHarnessBytes,
      sessionsPerGiB: Math.round((ids.length / (rssBytes / 2 ** 30)) * 100) / 100,
      controlPlaneRssBytes,
      allStreamingMs,
    };
  } finally {
    await Promise.allSettled(ids.map((id) => client.sessions.abort(id)));
    await Promise.allSettled(ids.map((id) => client.sessions.delete(id, { workspace: true })));
    rmSync(repo, { recursive: true, force: true });
  }
}

async function firstDelta(client: FlotillaClient, id: string, outer: AbortSignal): Promise<void> {
  const ac = new AbortController();
  const timeout = AbortSignal.timeout(180_000);
  const seen: string[] = [];
  try {
    for await (const e of client.sessions.stream(id, {
      after: 0,
      signal: AbortSignal.any([ac.signal, outer, timeout]),
    })) {
      seen.push(label(e));
      if (e.type === "text.delta") return;
      if (e.type === "turn.finished" || (e.type === "session.status" && e.data.status === "failed"))
        throw new Error(`session ${id} ended before streaming; saw ${seen.join(", ")}`);
    }
    throw new Error(`session ${id}: stream ended early; saw ${seen.join(", ")}`);
  } catch (e) {
    if (timeout.aborted) throw new Error(`session ${id} did not stream in 180 s; saw ${seen.join(", ")}`);
    throw e;
  } finally {
    ac.abort();
  }
}
