import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Session } from "@flotilla/client";
import type { WebSocketRoute } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, sh, Tmux } from "../packages/cli/test/cli.ts";
import { scenario } from "../packages/server/test/scenario.ts";
import {
  type Browser,
  type BrowserContext,
  haveChromium,
  launchBrowser,
  login,
  type Page,
  scenarioOn,
  shoot,
  type WatchedPage,
  watchedPage,
} from "./browser.ts";
import { makeRepo, ROOT, startTestServer, type TestServer, waitFor } from "./support.ts";

/** What a user sees in a page's terminal: xterm's rendered rows, right-trimmed. */
const rows = (page: Page) =>
  page
    .getByTestId("terminal")
    .locator(".xterm-rows > div")
    .evaluateAll((els) => els.map((e) => (e.textContent ?? "").replace(/\u00a0/g, " ").trimEnd()));

/** The shell's transcript from the first command on, blank lines dropped: comparable across clients. */
const fromFirstCommand = (lines: string[]) => {
  const start = lines.indexOf("$ echo hi");
  return start < 0 ? [] : lines.slice(start).filter((l) => l !== "");
};

describe.skipIf(!haveChromium)("the terminal tab in real browsers", () => {
  let t: TestServer;
  let browser: Browser;
  let tmux: Tmux;
  let session: Session;
  let bobToken: string;
  const contexts: BrowserContext[] = [];

  beforeAll(async () => {
    // The shell's home (the shard's) has a profile with a short prompt, so no line wraps and screens compare as text.
    t = await startTestServer({
      scenario,
      config: {
        terminal: {
          shell: "bash",
          graceMs: 5000,
          idleMs: 60_000,
        },
      },
    });
    browser = await launchBrowser();
    tmux = new Tmux();
    session = await t.client.sessions.create({ repo: makeRepo(), prompt: "hello" });
    await waitFor(async () => (await t.client.sessions.get(session.id)).status === "idle", 90_000, "idle");
    bobToken = (await t.client.tokens.create("bob", "member")).token;
  });
  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    tmux?.close();
    await t?.close();
  });

  /**
   * The page's terminal sockets pass through Playwright (still opened by the page itself, with its
   * cookie and origin), so a test can drop one, or refuse reconnects for a while, as a network would.
   */
  interface Wire {
    sockets: WebSocketRoute[];
    blocked: boolean;
    drop(): Promise<void>;
  }
  const open = async (
    token: string,
    opts: { wired?: boolean } = {},
  ): Promise<WatchedPage & { wire: Wire }> => {
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    contexts.push(context);
    const w = await watchedPage(context);
    const wire: Wire = {
      sockets: [],
      blocked: false,
      drop: () => wire.sockets.at(-1)!.close({ code: 4000, reason: "dropped by the test" }),
    };
    if (opts.wired)
      await w.page.routeWebSocket(/\/terminal\?/, (ws) => {
        if (wire.blocked) return ws.close({ code: 4001, reason: "refused by the test" });
        ws.connectToServer();
        wire.sockets.push(ws);
      });
    await login(w.page, t.url, token);
    await w.page.goto(`${t.url}/s/${session.id}/terminal`);
    return { ...w, wire };
  };
  const type = async (page: Page, line: string) => {
    await page.getByTestId("terminal").click();
    await page.keyboard.type(line);
    await page.keyboard.press("Enter");
  };
  // The shell's echo crosses the PTY, the server and the page: the default poll (30 s, scaled).
  const showsLines = (page: Page, ...want: string[]) =>
    expect
      .poll(async () => {
        const have = await rows(page);
        return want.filter((l) => !have.includes(l));
      })
      .toEqual([]);
  const role = (page: Page) => page.getByTestId("terminal-role");

  let a: Awaited<ReturnType<typeof open>>;
  let b: Awaited<ReturnType<typeof open>>;

  it("shares one shell: a driver types, a viewer watches read-only, control moves, and the CLI sees the same", async () => {
    a = await open(t.token, { wired: true });
    // A comes first: it holds the lease before B's page opens (opened together, B's socket can
    // reach the server first, A's going through the test's wire).
    await expect.poll(() => role(a.page).textContent()).toBe("Driving");
    b = await open(bobToken);
    const both = {
      page: a.page,
      get problems() {
        return [...a.problems.map((p) => `A ${p}`), ...b.problems.map((p) => `B ${p}`)];
      },
    };
    await scenarioOn(both, "terminal", async () => {
      // A came first: it holds the lease.
      await expect.poll(() => role(a.page).textContent()).toBe("Driving");
      await type(a.page, "echo hi");
      await showsLines(a.page, "$ echo hi", "hi");

      // B is a late joiner: the snapshot brings what was already on the screen, then live output.
      await expect.poll(() => role(b.page).textContent()).toBe("Watching · read-only");
      await showsLines(b.page, "$ echo hi", "hi");
      await expect.poll(() => b.page.getByTestId("terminal-lease").textContent()).toMatch(/^Driving: /);
      await type(a.page, "echo live-$((6*7))");
      await showsLines(b.page, "$ echo live-$((6*7))", "live-42");

      // B's keys go nowhere: nothing reaches the shell, and the page never even tried (no refusal shown).
      await type(b.page, "touch viewer-was-here");
      await type(a.page, "echo fence");
      await showsLines(a.page, "$ echo fence", "fence");
      await showsLines(b.page, "fence");
      expect(existsSync(join(session.workspacePath, "viewer-was-here"))).toBe(false);
      expect((await rows(a.page)).join("\n")).not.toContain("viewer-was-here");
      expect((await rows(b.page)).join("\n")).not.toContain("viewer-was-here");
      expect(await b.page.getByRole("alert").count()).toBe(0);
      await expect.poll(() => b.page.getByText("read-only").first().isVisible()).toBe(true);
      // bob is a member: no Force for him.
      expect(await b.page.getByRole("button", { name: "Force" }).count()).toBe(0);
      await shoot(a.page, "terminal");
      await shoot(b.page, "terminal-viewer");

      // B asks; A keeps control, and B is told so.
      await b.page.getByRole("button", { name: "Take control" }).click();
      await expect
        .poll(() => b.page.getByTestId("terminal-ask").textContent())
        .toMatch(/waiting for an answer/);
      const ask = a.page.getByRole("alertdialog", { name: "Control request" });
      await ask.waitFor();
      await ask.getByRole("button", { name: "Keep control" }).click();
      await expect.poll(() => b.page.getByTestId("terminal-ask").textContent()).toMatch(/kept control/);
      expect(await role(b.page).textContent()).toBe("Watching · read-only");
      expect(await role(a.page).textContent()).toBe("Driving");

      // B asks again; this time A hands over.
      await b.page.getByRole("button", { name: "Take control" }).click();
      await ask.waitFor();
      expect(await ask.textContent()).toContain("bob (a browser) asks to take control.");
      await ask.getByRole("button", { name: "Hand over" }).click();
      await expect.poll(() => role(b.page).textContent()).toBe("Driving");
      await expect.poll(() => role(a.page).textContent()).toBe("Watching · read-only");
      expect(await b.page.getByTestId("terminal-ask").textContent()).toBe(
        "Control granted: you are driving.",
      );
      await type(b.page, "echo moved");
      await showsLines(b.page, "$ echo moved", "moved");
      await showsLines(a.page, "$ echo moved", "moved");
      // A, now a viewer, cannot type either.
      await type(a.page, "touch former-driver-was-here");
      await type(b.page, "echo fence-2");
      await showsLines(a.page, "fence-2");
      expect(existsSync(join(session.workspacePath, "former-driver-was-here"))).toBe(false);

      // The CLI, attached read-only in a real terminal, gets the same screen as both browsers.
      const name = tmux.start(
        `cd ${sh(ROOT)} && node ${sh(BIN)} attach ${session.id} --view --server ${sh(t.url)} --token ${sh(t.token)}`,
      );
      await tmux.waitFor(name, /viewing, read-only\); Ctrl-\] detaches/);
      await tmux.waitFor(name, /^fence-2$/m);
      const same = async () => {
        const cli = fromFirstCommand(
          tmux
            .screen(name)
            .split("\n")
            .map((l) => l.trimEnd()),
        );
        const [ra, rb] = [fromFirstCommand(await rows(a.page)), fromFirstCommand(await rows(b.page))];
        return { a: ra, b: rb, cli };
      };
      await expect
        .poll(async () => {
          const s = await same();
          return [s.a, s.b].every((x) => JSON.stringify(x) === JSON.stringify(s.cli)) ? s.cli : s;
        })
        .toEqual(expect.arrayContaining(["$ echo hi", "hi", "live-42", "fence", "moved", "fence-2"]));

      // An admin takes control without asking: the lease moves at once.
      await a.page.getByRole("button", { name: "Force" }).click();
      await expect.poll(() => role(a.page).textContent()).toBe("Driving");
      await expect.poll(() => role(b.page).textContent()).toBe("Watching · read-only");
      await type(a.page, "echo forced");
      await showsLines(b.page, "$ echo forced", "forced");
      await tmux.waitFor(name, /^forced$/m);
      await expect
        .poll(async () => {
          const s = await same();
          return [s.a, s.b].every((x) => JSON.stringify(x) === JSON.stringify(s.cli)) ? s.cli.slice(-3) : s;
        })
        .toEqual(["$ echo forced", "forced", "$"]);
      tmux.kill(name);

      // The lease moves are on the session's record.
      const reasons = (await t.client.sessions.events(session.id)).items.flatMap((e) =>
        e.type === "terminal.lease" ? [e.data.reason] : [],
      );
      expect(reasons).toEqual(expect.arrayContaining(["acquired", "handed over", "forced"]));

      expect(a.problems).toEqual([]);
      expect(b.problems).toEqual([]);
    });
  });

  it("reconnects on its own: a viewer gets the screen again, a driver keeps its lease", async () => {
    expect(a, "needs the first test's pages").toBeDefined();
    const c = await open(t.token, { wired: true });
    const all = {
      page: c.page,
      get problems() {
        return [a, b, c].flatMap((w, i) => w.problems.map((p) => `${"ABC"[i]} ${p}`));
      },
    };
    await scenarioOn(all, "terminal-reconnect", async () => {
      await expect.poll(() => role(c.page).textContent()).toBe("Watching · read-only");
      await showsLines(c.page, "$ echo forced", "forced");
      const link = c.page.getByTestId("terminal-link");

      // C loses its socket and cannot get back for a while; meanwhile the driver runs a command.
      c.wire.blocked = true;
      await c.wire.drop();
      await expect.poll(() => link.textContent()).toBe("Reconnecting…");
      await type(a.page, "echo while-away");
      await showsLines(a.page, "$ echo while-away", "while-away");
      expect(await rows(c.page)).not.toContain("while-away");
      // Back: the snapshot brings what happened while it was away.
      c.wire.blocked = false;
      await showsLines(c.page, "$ echo while-away", "while-away");
      await link.waitFor({ state: "detached" });
      expect(await role(c.page).textContent()).toBe("Watching · read-only");

      // The driver's socket drops: it comes back within the grace period as the same client, still driving.
      const before = a.wire.sockets.length;
      await a.wire.drop();
      await expect.poll(() => a.wire.sockets.length).toBe(before + 1);
      await expect.poll(() => a.page.getByTestId("terminal-link").count()).toBe(0);
      await expect.poll(() => role(a.page).textContent()).toBe("Driving");
      await type(a.page, "echo still-driving");
      await showsLines(b.page, "$ echo still-driving", "still-driving");
      await showsLines(c.page, "still-driving");
      // C's screen was rebuilt from the snapshot, not added to: it reads as B's, which never dropped.
      await expect
        .poll(async () => [fromFirstCommand(await rows(c.page)), fromFirstCommand(await rows(b.page))])
        .toSatisfy(([rc, rb]) => rc!.length > 0 && JSON.stringify(rc) === JSON.stringify(rb));
      const reasons = (await t.client.sessions.events(session.id)).items.flatMap((e) =>
        e.type === "terminal.lease" ? [e.data.reason] : [],
      );
      expect(reasons).not.toContain("driver disconnected");
      expect(all.problems).toEqual([]);
    });
  });
});
