import type { Scenario } from "@flotilla/scripted-model";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  collectUntil,
  makeRepo,
  startTestServer,
  type TestServer,
  untilTurnFinished,
  waitFor,
} from "../../../test/support.ts";

// Real work inside the default sandbox: the agent edits files and runs git, the task's verify runs
// the repository's own tests with npm, and the agent's memory survives a kill -9 of its harness.
const scenario: Scenario = {
  rules: [
    {
      match: "^write the greeting",
      steps: [
        { tool: "write", args: { filePath: "greeting.txt", content: "hello, sandbox\n" } },
        {
          tool: "bash",
          args: {
            command: "git add greeting.txt && git commit -q -m 'add greeting' && git log --format=%s -1",
            description: "commit it",
          },
        },
        { text: "Wrote and committed greeting.txt." },
      ],
    },
    { match: "^remember the codeword", steps: [{ text: "Noted." }] },
    {
      match: "^what was the codeword",
      steps: [{ recall: "codeword is (\\w+)", template: "The codeword was $1." }],
    },
  ],
  default: [{ text: "ok" }],
};

const nodeRepo = () =>
  makeRepo({
    "package.json": JSON.stringify({ name: "tiny", version: "1.0.0", scripts: { test: "node test.js" } }),
    "test.js": [
      'const fs = require("node:fs");',
      'const text = fs.readFileSync("greeting.txt", "utf8");',
      'if (text !== "hello, sandbox\\n") { console.error("wrong greeting"); process.exit(1); }',
      'console.log("1 test passed");',
    ].join("\n"),
  });

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ scenario, config: { runtime: "sandbox" } });
});
afterAll(async () => {
  await t?.close();
});

describe("work in the sandbox", () => {
  it("edits files, commits with git, and passes the repo's npm test in verify", async () => {
    const { task } = await t.client.tasks.submit({
      repo: nodeRepo(),
      prompt: "write the greeting and commit it",
      verify: "npm test",
    });
    const done = await waitFor(
      async () => {
        const x = await t.client.tasks.get(task.id);
        return ["succeeded", "failed", "dead", "timed_out", "cancelled"].includes(x.state) ? x : undefined;
      },
      120_000,
      "task final",
    );
    expect(done.state, JSON.stringify(done.result)).toBe("succeeded");
    expect(done.result?.verify?.exitCode).toBe(0);
    expect(done.result?.verify?.output).toContain("1 test passed");
    const sessionId = done.sessionId!;
    const events = (await t.client.sessions.events(sessionId)).items;
    const tool = events.find(
      (e) => e.type === "tool.updated" && e.data.tool === "bash" && e.data.output?.includes("add greeting"),
    );
    expect(tool, "git commit ran in the sandbox and printed its subject").toBeTruthy();
    const harness = (await t.client.harnesses()).find((h) => h.driver === "sandbox");
    expect(harness?.warning).toBeNull();
  });

  it("keeps the agent's memory across a kill -9 of its sandboxed harness", async () => {
    const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "remember the codeword is mango" });
    await collectUntil(t.client, s.id, untilTurnFinished());
    const h = (await t.client.harnesses()).find(
      (x) => x.state === "ready" && x.driver === "sandbox" && x.shardId === s.shardId,
    );
    expect(h?.pid).toBeTruthy();
    process.kill(-h!.pid!, "SIGKILL");
    await waitFor(
      async () => (await t.client.harnesses()).find((x) => x.id === h!.id)?.state === "lost",
      60_000,
      "harness seen as lost",
    );
    const after = (await t.client.sessions.get(s.id)).lastSeq;
    await t.client.sessions.send(s.id, { text: "what was the codeword?" });
    const events = await collectUntil(t.client, s.id, untilTurnFinished(), { after });
    const text = events
      .filter((e) => e.type === "text.completed")
      .map((e) => (e.data as { text: string }).text)
      .join(" ");
    expect(text).toContain("mango");
  });
});
