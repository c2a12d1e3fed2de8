import { spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "@flotilla/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createTestDb,
  deadline,
  makeRepo,
  ROOT,
  startTestServer,
  type TestServer,
  tempDir,
  waitFor,
} from "../../../test/support.ts";
import { scenario } from "../../server/test/scenario.ts";
import { BIN, sh, Tmux } from "./cli.ts";

// A person at a real terminal: the CLI runs in tmux (stdin and stdout are a TTY) and is driven by keystrokes.
let t: TestServer;
let tmux: Tmux;
beforeAll(async () => {
  t = await startTestServer({ scenario, config: { permission: "ask" } });
  tmux = new Tmux();
});
afterAll(async () => {
  tmux?.close();
  await t?.close();
});

const run = (prompt: string, repo: string) =>
  `cd ${sh(ROOT)} && node ${sh(BIN)} run ${sh(prompt)} --repo ${sh(repo)} --server ${sh(t.url)} --token ${sh(t.token)}`;

describe("flotilla run at a terminal, answering permission asks", () => {
  it("shows the ask with the file and its change; the single key `o` allows it once and the file is written", async () => {
    const name = tmux.start(run("write hello", makeRepo()));
    try {
      const screen = await tmux.waitFor(name, /Allow\? \[o\]nce \/ \[a\]lways \/ \[r\]eject:\s*$/m);
      const text = screen.input!;
      expect(text).toMatch(/\? edit\s+hello\.txt/);
      expect(text).toContain("+hello from the agent");
      // One key answers: no Enter needed.
      tmux.keys(name, "o");
      const [, code] = await tmux.waitFor(name, /^EXIT=(\d+)$/m);
      const after = tmux.screen(name);
      expect(code, after).toBe("0");
      expect(after).toContain("✓ allowed once");
      expect(after).toMatch(/✓ write hello\.txt/);
      expect(after).toMatch(/hello\.txt\s+\+1 −0/);
      const id = /\bses_[0-9a-z]+/.exec(after)![0];
      const s = await t.client.sessions.get(id);
      expect(existsSync(join(s.workspacePath, "hello.txt"))).toBe(true);
    } finally {
      tmux.kill(name);
    }
  });

  it("`r` then a message rejects it: the agent gets the message and the file is not written", async () => {
    const name = tmux.start(run("write hello", makeRepo()));
    try {
      await tmux.waitFor(name, /Allow\? \[o\]nce \/ \[a\]lways \/ \[r\]eject:\s*$/m);
      // A key that is not one of the choices says which to press and asks again.
      tmux.keys(name, "x");
      await tmux.waitFor(name, /press o, a or r/);
      tmux.keys(name, "r");
      await tmux.waitFor(name, /Tell the agent why \(optional, Enter to skip\):\s*$/m);
      tmux.type(name, "not now, use notes.md instead");
      tmux.keys(name, "Enter");
      const [, code] = await tmux.waitFor(name, /^EXIT=(\d+)$/m);
      const after = tmux.screen(name);
      expect(code, after).toBe("0");
      expect(after).toContain("✗ rejected: not now, use notes.md instead");
      expect(after).toMatch(/✗ write hello\.txt: The user rejected permission/);
      expect(after).toContain("no files changed");

      const id = /\bses_[0-9a-z]+/.exec(after)![0];
      const { items } = await t.client.sessions.events(id);
      const replied = items.filter((e) => e.type === "permission.replied");
      expect(replied.map((e) => e.data)).toEqual([
        expect.objectContaining({ reply: "reject", message: "not now, use notes.md instead" }),
      ]);
      const s = await t.client.sessions.get(id);
      expect(existsSync(join(s.workspacePath, "hello.txt"))).toBe(false);
    } finally {
      tmux.kill(name);
    }
  });
});

describe("flotilla server's log", () => {
  // No harness starts: no warm pool, no session.
  async function serverHome() {
    const home = tempDir("logs");
    writeFileSync(join(home, "config.yaml"), "pool: { warm: 0, warmWorkspaces: 0 }\n");
    return { home, db: await createTestDb(), port: await freePort() };
  }

  it("is human lines at a terminal (no JSON), and Ctrl-C shuts it down cleanly", async () => {
    const { home, db, port } = await serverHome();
    const name = tmux.start(
      `cd ${sh(ROOT)} && FLOTILLA_HOME=${sh(home)} DATABASE_URL=${sh(db)} node ${sh(BIN)} server --port ${port}`,
    );
    try {
      const screen = (await tmux.waitFor(name, /flotilla listening.*$/m, deadline(90_000))).input!;
      expect(screen).toMatch(/INFO.*flotilla listening/);
      expect(screen).not.toMatch(/^\{"level"/m);
      tmux.keys(name, "C-c");
      const [, code] = await tmux.waitFor(name, /^EXIT=(\d+)$/m, deadline(60_000));
      expect(tmux.screen(name)).toMatch(/shutting down/);
      expect(code).toBe("0");
    } finally {
      tmux.kill(name);
    }
  });

  it("is JSON lines when its output is not a terminal", async () => {
    const { home, db, port } = await serverHome();
    const child = spawn(process.execPath, [BIN, "server", "--port", String(port)], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? "/root",
        FLOTILLA_HOME: home,
        DATABASE_URL: db,
      },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
    });
    try {
      await waitFor(async () => out.includes("flotilla listening"), 90_000, "flotilla listening");
      const line = out.split("\n").find((l) => l.includes("flotilla listening"))!;
      expect(JSON.parse(line)).toMatchObject({ msg: "flotilla listening", url: `http://127.0.0.1:${port}` });
    } finally {
      if (child.pid && child.pid > 1) process.kill(-child.pid, "SIGINT");
      await new Promise((r) => child.once("close", r));
    }
  });
});
