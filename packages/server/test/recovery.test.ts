import type { ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FlotillaClient } from "@flotilla/client";
import type { SessionEvent } from "@flotilla/contracts";
import { type ScriptedModelServer, startScriptedModel } from "@flotilla/scripted-model";
import { freePort } from "@flotilla/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  assertGapFree,
  collectUntil,
  createTestDb,
  MODEL,
  makeRepo,
  spawnFlotilla,
  tempDir,
  untilTurnFinished,
  waitFor,
} from "../../../test/support.ts";
import { scenario } from "./scenario.ts";

const SLOW_TEXT =
  "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen";

let model: ScriptedModelServer;
let home: string;
let db: string;
let port: number;
let child: ChildProcess | undefined;
let client: FlotillaClient;
const logFile = () => join(home, "server.log");

async function boot(): Promise<void> {
  child = spawnFlotilla(
    ["server", "--port", String(port)],
    { FLOTILLA_HOME: home, DATABASE_URL: db },
    logFile(),
  );
  const exited = new Promise((r) => child!.once("exit", r));
  await waitFor(
    async () => {
      if (child?.exitCode !== null)
        throw new Error(`server exited: ${readFileSync(logFile(), "utf8").slice(-2000)}`);
      const res = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1000) });
      return res.ok;
    },
    60_000,
    "control plane ready",
  );
  void exited;
  client = new FlotillaClient({
    baseUrl: `http://127.0.0.1:${port}`,
    token: readFileSync(join(home, "admin.token"), "utf8").trim(),
  });
}

async function kill9(): Promise<void> {
  const c = child!;
  const gone = new Promise((r) => c.once("exit", r));
  c.kill("SIGKILL");
  await gone;
}

beforeAll(async () => {
  model = await startScriptedModel({ scenario });
  home = tempDir("recovery");
  db = await createTestDb();
  port = await freePort();
  writeFileSync(
    join(home, "config.yaml"),
    [
      `defaultModel: ${MODEL}`,
      "permission: allow",
      'demo: "off"',
      "logLevel: debug",
      "providers:",
      "  scripted:",
      `    baseURL: ${model.url}`,
      "    models:",
      "      scripted-1: { name: Scripted }",
      // No checkouts made ahead: their set-up and warm-up turns would run on the harness this test kills.
      "pool: { warmWorkspaces: 0 }",
    ].join("\n"),
  );
  await boot();
});

afterAll(async () => {
  if (child && child.exitCode === null) {
    const gone = new Promise((r) => child!.once("exit", r));
    child.kill("SIGTERM");
    await gone;
  }
  // Whatever the server did not stop (a failed test), stop here: harnesses and the model gateway are
  // their own process groups.
  const hs = (await import("pg")).default;
  const c = new hs.Client({ connectionString: db });
  await c.connect();
  for (const r of (
    await c.query("select pid from harnesses where pid is not null union select pid from gateways")
  ).rows) {
    try {
      process.kill(-r.pid, "SIGKILL");
    } catch {}
  }
  await c.end();
  await model?.close();
});

const deltas = (events: SessionEvent[]) =>
  events.flatMap((e) => (e.type === "text.delta" ? [e.data.delta] : [])).join("");

describe("recovery", () => {
  it("control plane kill -9 mid-turn: the adopted harness finishes the turn, nothing lost or doubled, memory kept", async () => {
    const s = await client.sessions.create({ repo: makeRepo(), prompt: "slow, and the codeword is OSPREY" });
    const before = await collectUntil(client, s.id, (e) => e.type === "text.delta");
    await kill9();
    await boot();
    const events = await collectUntil(client, s.id, untilTurnFinished(1), { timeoutMs: 60_000 });
    assertGapFree(events);
    expect(events.slice(0, before.length).map((e) => e.id)).toEqual(before.map((e) => e.id));
    expect(events.some((e) => e.type === "harness.state" && e.data.state === "adopted")).toBe(true);
    const fin = events.find((e) => e.type === "turn.finished");
    expect(fin?.type === "turn.finished" && fin.data.outcome).toBe("success");
    // Every character exactly once, however the deltas were split between live stream and read-back.
    expect(deltas(events)).toBe(SLOW_TEXT);
    const completed = events.filter((e) => e.type === "text.completed");
    expect(completed).toHaveLength(1);
    expect(completed[0]?.type === "text.completed" && completed[0].data.text).toBe(SLOW_TEXT);

    await client.sessions.send(s.id, { text: "what was the codeword?" });
    const more = await collectUntil(client, s.id, untilTurnFinished(2));
    assertGapFree(more);
    expect(deltas(more.slice(more.findLastIndex((e) => e.type === "turn.started")))).toBe(
      "The codeword was OSPREY.",
    );
  });

  it("harness kill -9 mid-turn: detected, session interrupted with the reason, resumable on a new harness with memory", async () => {
    const s = await client.sessions.create({
      repo: makeRepo(),
      prompt: "remember the codeword: the codeword is HERON",
    });
    await collectUntil(client, s.id, untilTurnFinished(1));
    await client.sessions.send(s.id, { text: "slow please" });
    await collectUntil(
      client,
      s.id,
      (e, all) => e.type === "text.delta" && all.filter((x) => x.type === "turn.started").length === 2,
    );
    const harness = (await client.harnesses()).find((h) => h.shardId === s.shardId && h.state === "ready")!;
    expect(harness.pid).toBeGreaterThan(0);
    process.kill(-harness.pid!, "SIGKILL");

    const events = await collectUntil(client, s.id, untilTurnFinished(2), { timeoutMs: 60_000 });
    const fin = events.filter((e) => e.type === "turn.finished")[1];
    expect(fin?.type === "turn.finished" && fin.data.outcome).toBe("interrupted");
    expect(fin?.type === "turn.finished" && fin.data.error?.name).toBe("HarnessLost");
    const status = await client.sessions.get(s.id);
    expect(status.status).toBe("interrupted");
    expect(status.error?.message).toMatch(/harness/);
    expect((await client.harnesses()).find((h) => h.id === harness.id)?.state).toBe("lost");

    await client.sessions.send(s.id, { text: "what was the codeword?" });
    const more = await collectUntil(client, s.id, untilTurnFinished(3));
    assertGapFree(more);
    const third = more.slice(more.findLastIndex((e) => e.type === "turn.started"));
    expect(deltas(third), JSON.stringify(third.map((e) => [e.type, e.data]))).toBe("The codeword was HERON.");
    const now = (await client.harnesses()).filter((h) => h.shardId === s.shardId && h.state === "ready");
    expect(now).toHaveLength(1);
    expect(now[0]!.id).not.toBe(harness.id);
  });

  it("control plane kill -9 while the harness dies too: the session is marked interrupted with the reason at boot", async () => {
    const s = await client.sessions.create({ repo: makeRepo(), prompt: "hang until aborted" });
    await collectUntil(client, s.id, (e) => e.type === "text.delta");
    const harness = (await client.harnesses()).find((h) => h.shardId === s.shardId && h.state === "ready")!;
    await kill9();
    process.kill(-harness.pid!, "SIGKILL");
    await boot();
    const got = await client.sessions.get(s.id);
    expect(got.status).toBe("interrupted");
    const events = (await client.sessions.events(s.id)).items;
    assertGapFree(events);
    const fin = events.find((e) => e.type === "turn.finished");
    expect(fin?.type === "turn.finished" && fin.data.outcome).toBe("interrupted");
    expect((await client.harnesses()).find((h) => h.id === harness.id)?.state).toBe("lost");
  });
});
