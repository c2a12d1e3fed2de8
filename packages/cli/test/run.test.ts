import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import type { SessionEvent } from "@flotilla/contracts";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  assertGapFree,
  makeRepo,
  startTestServer,
  type TestServer,
  tempDir,
  waitFor,
} from "../../../test/support.ts";
import { TcpProxy } from "../../../test/tcp-proxy.ts";
import { scenario } from "../../server/test/scenario.ts";
import { cliEnv, killChildren, runCli, spawnCli } from "./cli.ts";

let t: TestServer;
let conn: string[];
beforeAll(async () => {
  t = await startTestServer({ scenario });
  conn = ["--server", t.url, "--token", t.token];
});
afterEach(() => killChildren());
afterAll(async () => {
  killChildren();
  await t?.close();
});

const sessionIdIn = (text: string) => /\bses_[0-9a-z]+/.exec(text)?.[0];

describe("flotilla run, diff, send, logs", () => {
  let id: string;

  it("runs a prompt that edits a file: streamed text, a tool line, a summary with the file; diff prints the patch", async () => {
    const repo = makeRepo();
    const r = await runCli(["run", "write hello please", "--repo", repo, ...conn]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("I wrote hello.txt for you.");
    expect(r.stdout).toMatch(/✓ write hello\.txt/);
    expect(r.stdout).toMatch(/✓ done in \d/);
    expect(r.stdout).toMatch(/hello\.txt\s+\+1 −0/);
    expect(r.stdout).toMatch(/tokens [\d,]+ in · [\d,]+ out · cost \$/);
    // Not a terminal: plain text, no colour codes for a pipe or a log file.
    expect(r.stdout).not.toContain("\x1b[");
    id = sessionIdIn(r.stdout)!;
    expect(id).toBeTruthy();

    // The work happened in the session's worktree, not in the user's checkout.
    const s = await t.client.sessions.get(id);
    expect(readFileSync(join(s.workspacePath, "hello.txt"), "utf8")).toBe("hello from the agent\n");

    const diff = await runCli(["diff", id, ...conn]);
    expect(diff.code).toBe(0);
    expect(diff.stdout).toContain("+++ b/hello.txt");
    expect(diff.stdout).toContain("+hello from the agent");
    const stat = await runCli(["diff", id, "--stat", ...conn]);
    expect(stat.stdout).toMatch(/hello\.txt \| \+1 −0/);
  });

  it("send --wait renders a second turn; logs replays the stored events, as text and as gap-free JSON", async () => {
    const r = await runCli(["send", id, "say hello", "--wait", ...conn]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("› say hello");
    expect(r.stdout).toContain("Hello from the scripted model.");
    expect(r.stdout).not.toContain("› write hello please");

    const text = await runCli(["logs", id, ...conn]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain("› write hello please");
    expect(text.stdout).toContain("› say hello");
    expect(text.stdout.match(/✓ done in/g)).toHaveLength(2);
    // Each turn's first and last lines carry their seq: the number --after takes, without --json.
    const second = /› say hello #(\d+)/.exec(text.stdout);
    expect(second, text.stdout).not.toBeNull();
    expect(text.stdout).toMatch(/✓ done in .* #\d+/);
    const rest = await runCli(["logs", id, "--after", String(Number(second![1]) - 1), ...conn]);
    expect(rest.stdout).toContain("› say hello");
    expect(rest.stdout).not.toContain("› write hello please");

    const json = await runCli(["logs", id, "--json", ...conn]);
    const events = json.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as SessionEvent);
    assertGapFree(events);
    expect(events.filter((e) => e.type === "turn.finished")).toHaveLength(2);
    const tail = await runCli(["logs", id, "--json", "--after", String(events.length - 2), ...conn]);
    expect(
      tail.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).seq),
    ).toEqual([events.length - 1, events.length]);
  });

  it("fork says it shares the workspace; logs of the fork reads as the parent's did, prompts in order", async () => {
    const f = await runCli(["fork", id, ...conn]);
    expect(f.code).toBe(0);
    const forkId = /→ (ses_[0-9a-z]+)/.exec(f.stdout)?.[1];
    expect(forkId, f.stdout).toBeTruthy();
    expect(f.stdout).toContain(`it shares ${id}'s workspace`);
    const parent = (await runCli(["logs", id, ...conn])).stdout;
    const fork = (await runCli(["logs", forkId!, ...conn])).stdout;
    // Seqs differ (the fork numbers its own log); the turns and what was said must not.
    const turns = (out: string) =>
      out
        .match(/› .+|Hello from the scripted model\.|I wrote hello\.txt for you\./g)
        ?.map((l) => l.replace(/ #\d+$/, ""));
    expect(turns(fork)).toEqual(turns(parent));
    expect(turns(fork)).toEqual([
      expect.stringMatching(/^› write hello please/),
      "I wrote hello.txt for you.",
      expect.stringMatching(/^› say hello/),
      "Hello from the scripted model.",
    ]);
    expect(fork).toContain(`forked from ${id}`);
  });

  it("logs --follow says when the stream drops and when it is back, and where to resume after Ctrl-C", async () => {
    const proxy = await new TcpProxy(new URL(t.url)).start();
    try {
      const last = (await t.client.sessions.get(id)).lastSeq;
      const r = spawnCli(["logs", id, "--follow", "--server", proxy.url, "--token", t.token]);
      await waitFor(async () => r.stdout().includes("› say hello"), 30_000, "the replay");
      proxy.refuse();
      expect(proxy.drop()).toBeGreaterThan(0);
      await waitFor(async () => r.stderr().includes("connection lost; reconnecting…"), 30_000, "the warning");
      proxy.accept();
      await waitFor(
        async () => r.stderr().includes(`reconnected; resuming after #${last}`),
        30_000,
        "the reconnection",
      );
      r.child.kill("SIGINT");
      const { code } = await r.exited;
      expect(code).toBe(130);
      expect(r.stderr()).toContain(
        `stopped after #${last}: flotilla logs ${id} --follow --after ${last} resumes`,
      );
    } finally {
      await proxy.close();
    }
  });

  it("lists and shows sessions, as a table and as JSON", async () => {
    const list = await runCli(["sessions", ...conn]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^ID\s+STATUS\s+TITLE\s+REPO\s+AGE/);
    expect(list.stdout).toContain(id);
    const page = JSON.parse((await runCli(["sessions", "--json", "--status", "idle", ...conn])).stdout);
    expect(page.items.map((s: { id: string }) => s.id)).toContain(id);
    const show = await runCli(["show", id, ...conn]);
    expect(show.stdout).toMatch(new RegExp(`^${id}\\s+idle`));
    expect(show.stdout).toContain(`flotilla/${id}`);
    const shown = JSON.parse((await runCli(["show", id, "--json", ...conn])).stdout);
    expect(shown).toMatchObject({ session: { id, status: "idle" }, permissions: [] });
  });

  it("run --json prints every event as one JSON line, seqs 1..n without a gap, and exits by the outcome", async () => {
    const r = await runCli(["run", "edit readme now", "--repo", makeRepo(), "--json", ...conn]);
    expect(r.code).toBe(0);
    const events = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as SessionEvent);
    assertGapFree(events);
    // The turn's own final event ends it: nothing waits for the status written after it.
    expect(events.at(-1)).toMatchObject({
      type: "turn.finished",
      data: { outcome: "success", status: "idle" },
    });
    expect(events.some((e) => e.type === "file.edited" && e.data.path === "README.md")).toBe(true);
    // Nothing else on stdout: every line parsed as an event.
    expect(r.stdout.trim().split("\n")).toHaveLength(events.length);
  });

  it("exits 1 when the turn fails, saying why", async () => {
    const r = await runCli(["run", "fail auth now", "--repo", makeRepo(), ...conn]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/✗ failed .*invalid api key/);
  });
});

describe("tokens", () => {
  it("creates a token shown once, lists it, revokes it; the revoked token is refused", async () => {
    const created = JSON.parse(
      (await runCli(["token", "create", "ci-bot", "--role", "member", "--json", ...conn])).stdout,
    );
    expect(created.token).toMatch(/^flt_/);
    const asMember = await runCli(["sessions", "--server", t.url, "--token", created.token]);
    expect(asMember.code).toBe(0);
    const list = await runCli(["token", "list", ...conn]);
    expect(list.stdout).toMatch(new RegExp(`${created.info.id}\\s+ci-bot\\s+member`));
    expect(list.stdout).not.toContain(created.token);
    expect((await runCli(["token", "revoke", created.info.id, ...conn])).code).toBe(0);
    const refused = await runCli(["sessions", "--server", t.url, "--token", created.token]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^error unauthorized: /);
  });
});

describe("errors", () => {
  it("a bad token: exit 1 and `error unauthorized`", async () => {
    const r = await runCli(["sessions", "--server", t.url, "--token", "flt_not-a-real-token"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error unauthorized: invalid or revoked token/);
    expect(r.stdout).toBe("");
  });

  it("an unknown session: exit 1 and `error not_found` naming the field", async () => {
    for (const args of [
      ["show", "ses_doesnotexist"],
      ["logs", "ses_doesnotexist"],
      ["diff", "ses_nope"],
    ]) {
      const r = await runCli([...args, ...conn]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^error not_found: no session ses_\w+ \(field: id\)/);
    }
  });

  it("invalid input from the server names the field", async () => {
    const r = await runCli(["run", "hi", "--repo", tempDir("notgit"), ...conn]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error repo_not_git: .* \(field: repo\)/);
  });

  it("an unreachable server or a missing token: one line saying what to do, exit 2", async () => {
    const port = await closedPort();
    const r = await runCli(["sessions", "--server", `http://127.0.0.1:${port}`, "--token", "x"]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/cannot reach Flotilla at http:\/\/127\.0\.0\.1:\d+ .*npm start/);

    const home = tempDir("nohome");
    const n = await runCli(["sessions", "--server", t.url], { env: cliEnv({ FLOTILLA_HOME: home }) });
    expect(n.code).toBe(2);
    expect(n.stderr).toContain(`no API token: pass --token or set FLOTILLA_TOKEN`);
    expect(n.stderr).toContain(join(home, "admin.token"));

    // The token file the server writes on first boot is enough on its own.
    const viaFile = await runCli(["sessions", "--json"], {
      env: cliEnv({ FLOTILLA_HOME: t.home, FLOTILLA_URL: t.url }),
    });
    expect(viaFile.code).toBe(0);
  });
});

function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}
