import { getEventListeners } from "node:events";
import type { OpencodeClient } from "@opencode-ai/sdk/v2";
import { describe, expect, it } from "vitest";
import { prewarm } from "../src/agents/opencode/warm.ts";

// The directory's set-up asked for ahead of a first prompt: what it asks, and that it never holds
// the prompt back for long. No harness: a client that records its calls stands in for the SDK's.
function fakeClient(answer: () => Promise<unknown>) {
  const calls: string[] = [];
  const group = (name: string, methods: string[]) =>
    Object.fromEntries(
      methods.map((m) => [
        m,
        (q: Record<string, string>) => {
          calls.push(`${name}.${m} ${JSON.stringify(q)}`);
          return answer();
        },
      ]),
    );
  const client = {
    tool: group("tool", ["list"]),
    app: group("app", ["agents", "skills"]),
    provider: group("provider", ["list"]),
    command: group("command", ["list"]),
    vcs: group("vcs", ["get"]),
    file: group("file", ["status"]),
    project: group("project", ["current"]),
    mcp: group("mcp", ["status"]),
  } as unknown as OpencodeClient;
  return { client, calls };
}

describe("prewarm", () => {
  it("asks for every piece of the directory's set-up at once, naming the directory and the model", async () => {
    const { client, calls } = fakeClient(async () => ({ data: {} }));
    await prewarm(client, "/w/tree", "scripted/model-1");
    expect(calls).toHaveLength(9);
    expect(calls).toContain('tool.list {"directory":"/w/tree","provider":"scripted","model":"model-1"}');
    expect(calls.every((c) => c.includes('"directory":"/w/tree"'))).toBe(true);
  });

  it("ignores failures, and stops waiting for an answer that does not come", async () => {
    const failing = fakeClient(async () => {
      throw new Error("refused");
    });
    await expect(prewarm(failing.client, "/w", "p/m")).resolves.toBeUndefined();
    // Nothing ever answers: prewarm still returns (otherwise this test would run into its deadline).
    const silent = fakeClient(() => new Promise(() => {}));
    await expect(prewarm(silent.client, "/w", "p/m", 50)).resolves.toBeUndefined();
    expect(silent.calls).toHaveLength(9);
  });

  it("stops waiting when its caller's signal aborts, and leaves no listener on that long-lived signal", async () => {
    const ac = new AbortController();
    const { client } = fakeClient(async () => ({ data: {} }));
    for (let i = 0; i < 20; i++) await prewarm(client, "/w", "p/m", 5000, ac.signal);
    expect(getEventListeners(ac.signal, "abort")).toHaveLength(0);
    const silent = fakeClient(() => new Promise(() => {}));
    const waiting = prewarm(silent.client, "/w", "p/m", 600_000, ac.signal);
    ac.abort();
    await expect(waiting).resolves.toBeUndefined();
  });
});
