import { existsSync } from "node:fs";
import { join } from "node:path";
import type { SessionEvent } from "@flotilla/contracts";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  collectUntil,
  makeRepo,
  startTestServer,
  type TestServer,
  untilTurnFinished,
} from "../../../test/support.ts";
import { scenario } from "../../server/test/scenario.ts";
import { killChildren, runCli, spawnCli, until } from "./cli.ts";

// Acting on a session from another terminal: answering its permission asks, and Ctrl-C on a run.
let t: TestServer;
let conn: string[];
beforeAll(async () => {
  t = await startTestServer({ scenario, config: { permission: "ask" } });
  conn = ["--server", t.url, "--token", t.token];
});
afterEach(() => killChildren());
afterAll(async () => {
  killChildren();
  await t?.close();
});

const asked = (e: SessionEvent) => e.type === "permission.asked";

describe("approve and reject", () => {
  it("approve answers the only pending request once; the file is written", async () => {
    const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "write hello" });
    const before = await collectUntil(t.client, s.id, asked);
    const r = await runCli(["approve", s.id, ...conn]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/✓ allowed once: edit hello\.txt/);
    const events = await collectUntil(t.client, s.id, untilTurnFinished(1), { after: before.at(-1)!.seq });
    expect(events.find((e) => e.type === "permission.replied")?.data).toMatchObject({ reply: "once" });
    expect(existsSync(join(s.workspacePath, "hello.txt"))).toBe(true);

    // Nothing is pending any more: a clear refusal, not a guess.
    const none = await runCli(["approve", s.id, ...conn]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/^error not_found: no pending permission request in ses_/);
  });

  it("reject --message answers a named request; the agent gets the message and the command does not run", async () => {
    const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "run a command" });
    const before = await collectUntil(t.client, s.id, asked);
    const ask = before.at(-1)!;
    expect(ask.type === "permission.asked" && ask.data.permission).toBe("bash");
    const requestId = ask.type === "permission.asked" ? ask.data.requestId : "";

    const shown = await runCli(["show", s.id, ...conn]);
    expect(shown.stdout).toMatch(/^ses_\w+\s+waiting_permission/);
    expect(shown.stdout).toMatch(/\? bash\s+echo from-bash > bash\.txt/);
    expect(shown.stdout).toContain(`request ${requestId}`);

    const r = await runCli(["reject", s.id, requestId, "--message", "use git instead", ...conn]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("✗ rejected: bash echo from-bash > bash.txt");
    const events = await collectUntil(t.client, s.id, untilTurnFinished(1), { after: ask.seq });
    expect(events.find((e) => e.type === "permission.replied")?.data).toEqual({
      requestId,
      reply: "reject",
      message: "use git instead",
    });
    expect(existsSync(join(s.workspacePath, "bash.txt"))).toBe(false);

    // Answering it again: the server's conflict, as it said it.
    const again = await runCli(["approve", s.id, requestId, ...conn]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^error conflict: permission request \S+ was already answered/);
  });
});

describe("Ctrl-C", () => {
  it("aborts the running turn, says so and exits 130; the session's last turn is aborted", async () => {
    const run = spawnCli(["run", "hang until aborted", "--repo", makeRepo(), ...conn]);
    await until(
      "streamed text from the hanging turn",
      () => run.stdout().includes("Working on it"),
      90_000,
      () => run.output(),
    );
    const id = /\bses_[0-9a-z]+/.exec(run.stdout())![0];
    run.child.kill("SIGINT");
    const { code } = await run.exited;
    expect(code, run.output()).toBe(130);
    expect(run.stdout()).toContain("aborting the turn");
    expect(run.stdout()).toMatch(/■ aborted after \d/);

    const { items } = await t.client.sessions.events(id);
    const finished = items.filter((e) => e.type === "turn.finished");
    expect(finished.at(-1)?.data).toMatchObject({ outcome: "aborted" });
    expect((await t.client.sessions.get(id)).status).toBe("idle");
  });
});
