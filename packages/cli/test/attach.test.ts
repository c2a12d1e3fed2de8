import type { Session } from "@flotilla/client";
import type { SessionEvent, TerminalServerFrame } from "@flotilla/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  deadline,
  makeRepo,
  ROOT,
  startTestServer,
  type TestServer,
  waitFor,
} from "../../../test/support.ts";
import { TermSocket } from "../../../test/terminal-support.ts";
import { scenario } from "../../server/test/scenario.ts";
import { BIN, sh, Tmux } from "./cli.ts";

// `flotilla attach` in a real terminal (tmux), sharing one shell with a WebSocket client.
let t: TestServer;
let tmux: Tmux;
let session: Session;
const sockets: TermSocket[] = [];
// How long a dropped driver keeps the lease: long enough for the CLI to start and attach meanwhile
// (8 s was not, on a machine at load 9: the grace ran out before the CLI had attached).
const GRACE_MS = deadline(20_000);
beforeAll(async () => {
  t = await startTestServer({
    scenario,
    config: {
      terminal: {
        shell: "bash",
        graceMs: GRACE_MS,
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
const socket = async (mode: "drive" | "view", client?: string) => {
  const s = new TermSocket(t.client.terminalUrl(session.id, { mode, client }), t.token);
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
      // Handed back, not dropped: the next test need not wait out the grace.
      driver.send({ type: "release" });
      await driver.close();
    }
  });

  it("driving: keystrokes reach the shell, the terminal's size applies, and a viewer sees it all", async () => {
    const viewer = await socket("view");
    // The last driver handed the lease back; once that is seen, this one can drive.
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
      const n = viewer.frames.length;
      tmux.keys(name, "C-]");
      await tmux.waitFor(name, /^EXIT=0$/m);
      // Detaching on purpose hands the lease back at once, rather than holding it through the grace
      // the server keeps for a dropped connection.
      await viewer.waitFor((f) => f.type === "lease" && f.holder === null, n);
      const last = await lastLeaseEvent((e) => e.data.holder === null);
      expect(last.data.reason).toBe("released");
    } finally {
      tmux.kill(name);
    }
  });

  it("a closed browser tab's lease in its grace: says whose it is and when it frees, not driving, then that control came", async () => {
    const viewer = await socket("view");
    await viewer.waitFor((f) => f.type === "lease" && f.holder === null);
    // A browser tab drives, then is closed: the server keeps its lease for the grace period.
    const tab = await socket("drive", "web-closedtab");
    await tab.waitFor((f) => f.type === "lease" && f.you);
    const n = viewer.frames.length;
    await tab.close();
    const away = await viewer.waitFor((f): f is Lease => f.type === "lease" && !!f.graceUntil, n);

    const name = tmux.start(attach());
    try {
      await tmux.waitFor(name, /attached to \S+ \(viewing for now\); Ctrl-\] detaches/);
      const [, at] = await tmux.waitFor(
        name,
        /the lease is held by you, in a browser tab, which disconnected: it frees at (\d\d:\d\d:\d\d) \(in \d+ s\) unless it comes back; you get control then/,
      );
      expect(at).toBe(new Date(away.graceUntil!).toTimeString().slice(0, 8));
      expect(tmux.screen(name)).not.toContain("(driving)");

      // The grace ends: the lease comes to the CLI, which says so, and its keys now reach the shell.
      await tmux.waitFor(name, /you are driving now: your keys go to the shell/, GRACE_MS + deadline(30_000));
      await viewer.waitFor((f) => f.type === "lease" && !!f.holder?.includes("/cli-"), 0);
      tmux.type(name, "echo drove-$((3*4))");
      tmux.keys(name, "Enter");
      await viewer.waitText(/\n\r?drove-12\r\n/);
      const last = await lastLeaseEvent((e) => !!e.data.holder?.includes("/cli-"));
      expect(last.data.reason).toBe("driver disconnected");
      tmux.keys(name, "C-]");
      await tmux.waitFor(name, /^EXIT=0$/m);
    } finally {
      tmux.kill(name);
    }
  });
});

type Lease = Extract<TerminalServerFrame, { type: "lease" }>;
/** The session's latest terminal.lease event, once it is one that `pred` accepts (they are recorded after the move). */
const lastLeaseEvent = (pred: (e: LeaseEvent) => boolean) =>
  waitFor(
    async () => {
      const last = (await t.client.sessions.events(session.id)).items
        .filter((e): e is LeaseEvent => e.type === "terminal.lease")
        .at(-1);
      return last && pred(last) ? last : undefined;
    },
    10_000,
    "the lease event",
  );
type LeaseEvent = Extract<SessionEvent, { type: "terminal.lease" }>;
