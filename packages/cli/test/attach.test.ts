import type { Session } from "@flotilla/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeRepo, ROOT, startTestServer, type TestServer } from "../../../test/support.ts";
import { TermSocket } from "../../../test/terminal-support.ts";
import { scenario } from "../../server/test/scenario.ts";
import { BIN, sh, Tmux } from "./cli.ts";

// `flotilla attach` in a real terminal (tmux), sharing one shell with a WebSocket client.
let t: TestServer;
let tmux: Tmux;
let session: Session;
const sockets: TermSocket[] = [];
beforeAll(async () => {
  t = await startTestServer({
    scenario,
    config: {
      terminal: {
        shell: "bash",
        graceMs: 500,
        idleMs: 60_000,
      },
    },
  });
  tmux = new Tmux();
  session = await t.client.sessions.create({ repo: makeRepo(), prompt: "remember the codeword kiwi" });
});
afterAll(async () => {
  await Promise.all(sockets.map((s) => s.close()));
  tmux?.close();
  await t?.close();
});

const attach = (...flags: string[]) =>
  `cd ${sh(ROOT)} && node ${sh(BIN)} attach ${session.id} ${flags.join(" ")} --server ${sh(t.url)} --token ${sh(t.token)}`;
const socket = async (mode: "drive" | "view") => {
  const s = new TermSocket(t.client.terminalUrl(session.id, { mode }), t.token);
  sockets.push(s);
  await s.opened;
  await s.waitFor((f) => f.type === "lease");
  return s;
};

describe("flotilla attach", () => {
  it("--view shows what a WebSocket driver types, and Ctrl-] detaches", async () => {
    const driver = await socket("drive");
    driver.send({ type: "input", data: "echo before-$((1+1))\r" });
    await driver.waitText(/before-2\r\n/);

    const name = tmux.start(attach("--view"));
    try {
      await tmux.waitFor(name, /viewing, read-only\); Ctrl-\] detaches/);
      // The snapshot: what was on the screen before this client came.
      await tmux.waitFor(name, /^before-2$/m);
      driver.send({ type: "input", data: "echo from-driver\r" });
      await tmux.waitFor(name, /^from-driver$/m);
      // Typing in the viewer sends nothing: the driver never sees it.
      tmux.type(name, "echo from-viewer");
      tmux.keys(name, "Enter");
      driver.send({ type: "input", data: "echo fence\r" });
      await driver.waitText(/\n\r?fence\r\n/);
      expect(driver.plain()).not.toContain("from-viewer");
      tmux.keys(name, "C-]");
      const [, code] = await tmux.waitFor(name, /^EXIT=(\d+)$/m);
      expect(code).toBe("0");
      expect(tmux.screen(name)).toContain("[flotilla] detached");
    } finally {
      tmux.kill(name);
      await driver.close();
    }
  });

  it("driving: keystrokes reach the shell, the terminal's size applies, and a viewer sees it all", async () => {
    const viewer = await socket("view");
    // The last driver's lease is released after the grace; wait for it, then this one can drive.
    await viewer.waitFor((f) => f.type === "lease" && f.holder === null);
    const name = tmux.start(attach());
    try {
      await tmux.waitFor(name, /\(driving\); Ctrl-\] detaches/);
      await viewer.waitFor((f) => f.type === "resize" && f.cols === 200 && f.rows === 50);
      tmux.type(name, "stty size; echo typed-$((2+3))");
      tmux.keys(name, "Enter");
      await viewer.waitText(/\n\r?50 200\r\n/);
      await viewer.waitText(/\n\r?typed-5\r\n/);
      await tmux.waitFor(name, /^typed-5$/m);
      tmux.keys(name, "C-]");
      await tmux.waitFor(name, /^EXIT=0$/m);
    } finally {
      tmux.kill(name);
    }
  });
});
