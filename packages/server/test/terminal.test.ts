import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Session, SessionEvent } from "@flotilla/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deadline, makeRepo, startTestServer, type TestServer, waitFor } from "../../../test/support.ts";
import { lastLease, stripAnsi, TermSocket } from "../../../test/terminal-support.ts";
import { scenario } from "./scenario.ts";

// A real shell in a real PTY behind the real server: every check is on frames the server sent.
let t: TestServer;
let session: Session;
let member: string;
// Long enough for a client to join while a dropped driver's lease is kept (a WebSocket open, here).
const GRACE_MS = deadline(1500);
const sockets: TermSocket[] = [];

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
  session = await t.client.sessions.create({ repo: makeRepo(), prompt: "remember the codeword kiwi" });
  member = (await t.client.tokens.create("alice", "member")).token;
});
afterAll(async () => {
  await Promise.all(sockets.map((s) => s.close()));
  await t?.close();
});

const open = async (token: string, q: { mode: "drive" | "view"; client?: string }) => {
  const u = new URL(t.client.terminalUrl(session.id, q));
  const s = new TermSocket(u.toString(), token);
  sockets.push(s);
  await s.opened;
  return s;
};
const isLease = (f: { type: string }) => f.type === "lease";
const leaseEvents = async () =>
  (await t.client.sessions.events(session.id)).items.filter(
    (e): e is Extract<SessionEvent, { type: "terminal.lease" }> => e.type === "terminal.lease",
  );

describe("terminal attach", () => {
  let driver: TermSocket;
  let viewer: TermSocket;

  it("refuses a missing token before the upgrade", async () => {
    const s = new TermSocket(t.client.terminalUrl(session.id), "flt_wrong");
    await expect(s.opened).rejects.toThrow(/401/);
  });

  it("takes ?token= (for browsers); a plain GET is told to upgrade", async () => {
    const q = new TermSocket(t.client.terminalUrl(session.id, { mode: "view", tokenInQuery: true }), "");
    sockets.push(q);
    await q.opened;
    expect((await q.waitFor(() => true)).type).toBe("snapshot");
    await q.close();
    const res = await fetch(`${t.url}/sessions/${session.id}/terminal`, {
      headers: { authorization: `Bearer ${t.token}` },
    });
    expect(res.status).toBe(426);
  });

  it("a driver types, a viewer sees it, and the viewer's input is refused by the server", async () => {
    driver = await open(member, { mode: "drive", client: "drv" });
    expect(driver.frames[0]?.type ?? (await driver.waitFor(() => true)).type).toBe("snapshot");
    expect(await driver.waitFor(isLease)).toMatchObject({ you: true });

    viewer = await open(t.token, { mode: "view" });
    expect((await viewer.waitFor(() => true)).type).toBe("snapshot");
    expect(await viewer.waitFor(isLease)).toMatchObject({
      you: false,
      holder: expect.stringMatching(/\/drv$/),
    });

    driver.send({ type: "input", data: "echo hi\r" });
    await viewer.waitText(/\n\r?hi\r\n/);

    const n = viewer.frames.length;
    viewer.send({ type: "input", data: "touch viewer-was-here\r" });
    expect(await viewer.waitFor((f) => f.type === "error", n)).toMatchObject({ code: "forbidden" });
    // Anything the viewer's input did would have happened before the driver's next command.
    driver.send({ type: "input", data: "ls -a; echo marker-$((40+2))\r" });
    await driver.waitText(/marker-42/);
    expect(existsSync(join(session.workspacePath, "viewer-was-here"))).toBe(false);
    expect(driver.text()).not.toContain("viewer-was-here");
  });

  it("a late joiner's first frame is the current screen", async () => {
    const late = await open(t.token, { mode: "view" });
    const first = await late.waitFor(() => true);
    expect(first.type).toBe("snapshot");
    expect(first.type === "snapshot" && stripAnsi(first.data)).toMatch(/\n\r?hi\r\n/);
    expect(first).toMatchObject({ cols: 80, rows: 24 });
    await late.close();
  });

  it("the driver's resize applies and viewers are told", async () => {
    const n = viewer.frames.length;
    driver.send({ type: "resize", cols: 100, rows: 30 });
    expect(await viewer.waitFor((f) => f.type === "resize", n)).toMatchObject({ cols: 100, rows: 30 });
    driver.send({ type: "input", data: "stty size\r" });
    await driver.waitText(/\n\r?30 100\r\n/);
  });

  it("a drive connect while the lease is held joins as a viewer", async () => {
    const second = await open(t.token, { mode: "drive" });
    const lease = await second.waitFor(isLease);
    expect(lease).toMatchObject({ you: false, message: expect.stringContaining("joined as a viewer") });
    await second.close();
  });

  it("take asks the driver; force needs an admin and moves the lease at once", async () => {
    let n = driver.frames.length;
    viewer.send({ type: "take" });
    expect(await driver.waitFor((f) => f.type === "request", n)).toMatchObject({
      from: expect.stringMatching(/^tok_/),
    });
    expect(lastLease(driver)).toMatchObject({ you: true });

    const memberViewer = await open(member, { mode: "view" });
    await memberViewer.waitFor(isLease);
    n = memberViewer.frames.length;
    memberViewer.send({ type: "take", force: true });
    expect(await memberViewer.waitFor((f) => f.type === "error", n)).toMatchObject({ code: "forbidden" });
    await memberViewer.close();

    n = driver.frames.length;
    viewer.send({ type: "take", force: true });
    expect(await viewer.waitFor((f) => f.type === "lease" && f.you, 0)).toMatchObject({ you: true });
    expect(await driver.waitFor(isLease, n)).toMatchObject({ you: false });
    // The new driver's input now reaches the shell; the old one's is refused.
    viewer.send({ type: "input", data: "echo taken-$((1+1))\r" });
    await driver.waitText(/taken-2/);
    n = driver.frames.length;
    driver.send({ type: "input", data: "echo nope\r" });
    expect(await driver.waitFor((f) => f.type === "error", n)).toMatchObject({ code: "forbidden" });
  });

  it("release hands the lease to whoever asked", async () => {
    let n = viewer.frames.length;
    driver.send({ type: "take" });
    await viewer.waitFor((f) => f.type === "request", n);
    n = driver.frames.length;
    viewer.send({ type: "release" });
    expect(await driver.waitFor((f) => f.type === "lease" && f.you, n)).toMatchObject({ you: true });
  });

  it("a driver that reconnects within the grace keeps the lease; one that does not loses it", async () => {
    let n = viewer.frames.length;
    await driver.close();
    // Viewers hear that the driver dropped, then that it is back.
    expect(await viewer.waitFor((f) => f.type === "lease" && !!f.graceUntil, n)).toMatchObject({
      holder: expect.stringMatching(/\/drv$/),
    });
    driver = await open(member, { mode: "drive", client: "drv" });
    expect(await driver.waitFor(isLease)).toMatchObject({ you: true });
    expect(lastLease(driver)?.graceUntil).toBeUndefined();
    await viewer.waitFor((f) => f.type === "lease" && !f.graceUntil && !!f.holder?.endsWith("/drv"), n);

    n = viewer.frames.length;
    const t0 = Date.now();
    await driver.close();
    expect(await viewer.waitFor((f) => f.type === "lease" && f.holder === null, n)).toBeTruthy();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(GRACE_MS - 50);
  });

  it("records every lease change as a session event", async () => {
    const events = await waitFor(
      async () => {
        const e = await leaseEvents();
        return e.at(-1)?.data.reason === "driver disconnected" ? e : undefined;
      },
      10_000,
      "the disconnect's lease event",
    );
    expect(events.map((e) => [e.data.holder?.replace(/^tok_\w+\//, "") ?? null, e.data.reason])).toEqual([
      ["drv", "acquired"],
      [expect.any(String), "forced"],
      ["drv", "handed over"],
      [null, "driver disconnected"],
    ]);
  });

  it("a closed tab's lease in its grace: everyone is told until when, and a take gets it when the grace ends", async () => {
    const tab = await open(member, { mode: "drive", client: "web-tab" });
    expect(await tab.waitFor(isLease)).toMatchObject({ you: true });
    const n = viewer.frames.length;
    const closedAt = Date.now();
    await tab.close();
    const away = await viewer.waitFor(
      (f): f is Extract<typeof f, { type: "lease" }> => f.type === "lease" && !!f.graceUntil,
      n,
    );
    const heardAt = Date.now();
    expect(away).toMatchObject({ holder: expect.stringMatching(/\/web-tab$/), you: false });
    const until = Date.parse(away.graceUntil!);
    expect(until).toBeGreaterThanOrEqual(closedAt + GRACE_MS);
    expect(until).toBeLessThanOrEqual(heardAt + GRACE_MS);

    // Someone who asks to drive meanwhile joins as a viewer and is told whose lease it is and until when.
    const next = await open(t.token, { mode: "drive", client: "cli-next" });
    const joined = await next.waitFor(isLease);
    expect(joined).toMatchObject({
      you: false,
      holder: away.holder,
      graceUntil: away.graceUntil,
      message: expect.stringContaining(`disconnected and keeps the lease until ${away.graceUntil}`),
    });
    // Nobody is there to ask: the request waits for the grace, then the lease comes here.
    let m = next.frames.length;
    next.send({ type: "take" });
    expect(await next.waitFor(isLease, m)).toMatchObject({
      you: false,
      message: expect.stringContaining("away"),
    });
    m = next.frames.length;
    expect(await next.waitFor((f) => f.type === "lease" && f.you, m, deadline(15_000))).not.toHaveProperty(
      "graceUntil",
    );
    expect(Date.now()).toBeGreaterThanOrEqual(until - 20); // timers may fire a hair early
    // The lease move is on the session's record, with why.
    const last = await waitFor(
      async () => (await leaseEvents()).find((e) => e.data.holder?.endsWith("/cli-next")),
      10_000,
      "the lease event",
    );
    expect(last.data.reason).toBe("driver disconnected");
    next.send({ type: "input", data: "echo next-$((2*3))\r" });
    await viewer.waitText(/next-6/);
    await next.close();
  });

  it("deleting the session kills its shell and closes its sockets", async () => {
    const s = await open(t.token, { mode: "drive" });
    await s.waitFor(isLease);
    const code = s.closed;
    await t.client.sessions.delete(session.id);
    expect(await code).toBe(1001);
  });
});
