import { chmodSync, existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { SessionEvent } from "@flotilla/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  collectUntil,
  deadline,
  makeRepo,
  startTestServer,
  type TestServer,
  tempDir,
  untilTurnFinished,
} from "../../../test/support.ts";
import { cliEnv, killChildren, runCli } from "../../cli/test/cli.ts";
import { defaultOpencodeBin } from "../src/config/config.ts";
import { scenario } from "./scenario.ts";

// A harness that cannot start until the test lets it: the launcher exits at once with a message
// while the gate file is missing, as a broken install or a missing binary would.
const dir = tempDir("retry-bin");
const gate = join(dir, "open");
const launcher = join(dir, "opencode");
writeFileSync(
  launcher,
  `#!/bin/sh\nif [ ! -e ${gate} ]; then echo "simulated start failure" >&2; exit 1; fi\nexec ${defaultOpencodeBin()} "$@"\n`,
);
chmodSync(launcher, 0o755);

let t: TestServer;
beforeAll(async () => {
  // The local runtime runs the launcher as given (the sandbox binds only OpenCode's own directory);
  // how a failed session starts again does not depend on the runtime.
  t = await startTestServer({
    scenario,
    config: { runtime: "local", harness: { opencodeBin: launcher, startAttempts: 1 } as never },
  });
});
afterAll(async () => {
  killChildren();
  await t?.close();
  rmSync(dir, { recursive: true, force: true });
});

const failed = (e: SessionEvent) => e.type === "session.status" && e.data.status === "failed";

async function failedSession(prompt: string) {
  rmSync(gate, { force: true });
  const s = await t.client.sessions.create({ repo: makeRepo(), prompt });
  const events = await collectUntil(t.client, s.id, failed);
  const f = await t.client.sessions.get(s.id);
  expect(f.status).toBe("failed");
  // Said once, with the cause and the harness's last words: no repeated or dangling parts.
  expect(f.error?.message).toBe(
    "agent harness failed to start: harness exited with 1 before it was ready; its log ends: simulated start failure",
  );
  return { s, events };
}

describe("a session that failed to start", () => {
  it("retry runs its first prompt again on a new harness, reporting the new start", async () => {
    const { s, events } = await failedSession("remember the codeword: the codeword is PUFFIN");
    // The prompt never reached an agent.
    expect(events.some((e) => e.type === "turn.started")).toBe(false);
    writeFileSync(gate, "");
    const r = await t.client.sessions.retry(s.id);
    expect(r.status).toBe("provisioning");
    expect(r.error).toBeNull();
    const after = await collectUntil(t.client, s.id, untilTurnFinished(1), { after: events.at(-1)!.seq });
    expect(after[0]).toMatchObject({
      type: "session.status",
      data: { status: "provisioning", reason: "starting again" },
    });
    expect(after.find((e) => e.type === "turn.started")).toMatchObject({
      data: { prompt: "remember the codeword: the codeword is PUFFIN" },
    });
    expect(after.filter((e) => e.type === "turn.finished").at(-1)).toMatchObject({
      data: { outcome: "success" },
    });
    const done = await t.client.sessions.get(s.id);
    expect(done.status).toBe("idle");
    // The harness that serves it now is not the one that failed.
    const hs = (await t.client.harnesses()).filter((h) => h.shardId === s.shardId);
    expect(hs.filter((h) => h.state === "ready")).toHaveLength(1);
    expect(hs.some((h) => h.state === "lost")).toBe(true);

    // Retrying a working session is refused; a second retry after that runs the latest prompt.
    await t.client.sessions.send(s.id, { text: "what was the codeword?" });
    await expect(t.client.sessions.retry(s.id)).rejects.toMatchObject({ code: "session_busy", status: 409 });
    const two = await collectUntil(t.client, s.id, untilTurnFinished(2));
    await t.client.sessions.retry(s.id);
    const three = await collectUntil(t.client, s.id, untilTurnFinished(1), { after: two.at(-1)!.seq });
    expect(three.find((e) => e.type === "turn.started")).toMatchObject({
      data: { prompt: "what was the codeword?" },
    });
    expect(three.map((e) => (e.type === "text.delta" ? e.data.delta : "")).join("")).toBe(
      "The codeword was PUFFIN.",
    );
  });

  it("a message sent to it starts it again with that message; a start that fails again says so on the session", async () => {
    const { s, events } = await failedSession("say hi");
    // Still broken: the send is accepted and the new start's failure is reported where the first was.
    const again = await t.client.sessions.send(s.id, { text: "say hi again" });
    expect(again.status).toBe("provisioning");
    const second = await collectUntil(t.client, s.id, failed, { after: events.at(-1)!.seq });
    expect(second.find((e) => e.type === "error")).toMatchObject({
      data: { message: expect.stringMatching(/simulated start failure/) },
    });
    writeFileSync(gate, "");
    const r = await t.client.sessions.send(s.id, { text: "remember the codeword: the codeword is WREN" });
    expect(r.status).toBe("provisioning");
    const after = await collectUntil(t.client, s.id, untilTurnFinished(1), { after: second.at(-1)!.seq });
    expect(
      after.filter((e) => e.type === "turn.started").map((e) => e.type === "turn.started" && e.data.prompt),
    ).toEqual(["remember the codeword: the codeword is WREN"]);
  });

  it("flotilla retry --wait follows the new start to the end of its turn", async () => {
    const { s } = await failedSession("write hello please");
    const conn = ["--server", t.url, "--token", t.token];
    const show = await runCli(["run", "write hello please", "--repo", makeRepo(), ...conn], {
      timeoutMs: deadline(120_000),
    });
    // A run whose session cannot start says so and how to try again.
    expect(show.code).toBe(1);
    expect(show.stdout).toMatch(/the session could not start: .*simulated start failure/);
    expect(show.stdout).toMatch(/try again: flotilla retry ses_\w+ --wait/);

    writeFileSync(gate, "");
    const r = await runCli(["retry", s.id, "--wait", ...conn], {
      env: cliEnv(),
      timeoutMs: deadline(120_000),
    });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("hello.txt");
    expect(existsSync(join(s.workspacePath, "hello.txt"))).toBe(true);
  });
});
