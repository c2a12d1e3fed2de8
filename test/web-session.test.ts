import { existsSync } from "node:fs";
import { join } from "node:path";
import type { EventBody } from "@flotilla/contracts";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { scenario } from "../packages/server/test/scenario.ts";
import {
  type Browser,
  type BrowserContext,
  haveChromium,
  launchBrowser,
  login,
  scenarioOn,
  shoot,
  type WatchedPage,
  watchedPage,
} from "./browser.ts";
import { collectUntil, makeRepo, startTestServer, type TestServer, untilTurnFinished } from "./support.ts";
import { TcpProxy } from "./tcp-proxy.ts";

const SLOW_TEXT =
  "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen";

describe.skipIf(!haveChromium)("the session page in a real browser", () => {
  let t: TestServer;
  let browser: Browser;
  let context: BrowserContext;
  let proxy: TcpProxy;
  let w: WatchedPage;
  beforeAll(async () => {
    t = await startTestServer({ scenario, config: { permission: "ask" } });
    // The browser reaches the server only through the proxy, so the test can cut its streams.
    proxy = await new TcpProxy(new URL(t.url)).start();
    browser = await launchBrowser();
    context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    w = await watchedPage(context);
    await login(w.page, proxy.url, t.token);
  });
  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await proxy?.close();
    await t?.close();
  });

  const open = async (sessionId: string) => {
    await w.page.goto(`${proxy.url}/s/${sessionId}`);
    await w.page.getByTestId("transcript").waitFor({ state: "attached" });
  };
  const status = () => w.page.getByTestId("status").textContent();
  beforeEach(() => {
    w.problems.length = 0;
  });

  it("loses nothing of a turn when its stream is cut mid-turn, and says it is reconnecting", async () => {
    await scenarioOn(w, "sse-drop", async () => {
      const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "slow please" });
      await open(s.id);
      const text = w.page.getByTestId("assistant-text");
      await w.page.getByText("three", { exact: false }).waitFor({ timeout: 60_000 });
      proxy.refuse();
      expect(proxy.drop()).toBeGreaterThan(0);
      // Cut while the model was still mid-sentence: what follows arrives only after the reconnect.
      expect(await text.textContent()).not.toContain("sixteen");
      await w.page.getByRole("status").filter({ hasText: "Reconnecting" }).first().waitFor();
      // Let the turn run on (and finish) while the browser is cut off.
      await collectUntil(t.client, s.id, untilTurnFinished(1));
      proxy.accept();
      await expect.poll(status, { timeout: 30_000 }).toBe("idle");
      await expect.poll(async () => (await text.allTextContents()).map((x) => x.trim())).toEqual([SLOW_TEXT]);
      await w.page.getByText("live", { exact: true }).waitFor();
      // The cut streams are reported by the browser as failed loads; nothing else may complain.
      expect(w.problems.filter((p) => !/net::ERR_/.test(p))).toEqual([]);
    });
  });

  it("stays live on a session whose history holds an error event", async () => {
    const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "fail auth now" });
    await collectUntil(t.client, s.id, untilTurnFinished(1));
    await open(s.id);
    // The error is shown in the transcript...
    await w.page
      .getByText(/invalid api key/)
      .first()
      .waitFor();
    // ...and the stream that carried it is healthy: an SSE frame named `error` used to reach
    // EventSource's failure handler and leave the badge at "Reconnecting…" for good.
    await w.page.getByText("live", { exact: true }).waitFor();
    expect(await w.page.getByRole("status").filter({ hasText: "Reconnecting" }).count()).toBe(0);
  });

  it("answers a permission by keyboard alone: allow once, then reject with a message", async () => {
    await scenarioOn(w, "keyboard", async () => {
      const { page } = w;
      const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "write hello please" });
      await open(s.id);
      const ask = page.getByRole("alertdialog", { name: "Permission request" });
      await ask.waitFor({ timeout: 60_000 });
      // A background tab says the agent is waiting, in its title and icon.
      await expect.poll(() => page.title()).toMatch(/^● Needs approval · /);
      expect(await page.locator('link[rel="icon"]').getAttribute("href")).toBe("/favicon-alert.svg");
      // The request takes the focus; Tab reaches its first answer; Enter gives it.
      await expect
        .poll(() => page.evaluate(() => document.activeElement?.getAttribute("role")))
        .toBe("alertdialog");
      await page.keyboard.press("Tab");
      expect(await page.evaluate(() => document.activeElement?.textContent)).toBe("Allow once");
      await page.keyboard.press("Enter");
      await page.getByText("I wrote hello.txt for you.").waitFor({ timeout: 60_000 });
      await expect.poll(() => page.title()).not.toMatch(/Needs approval/);
      expect(await page.locator('link[rel="icon"]').getAttribute("href")).toBe("/favicon.svg");

      const s2 = await t.client.sessions.create({ repo: makeRepo(), prompt: "run a command please" });
      await open(s2.id);
      await ask.waitFor({ timeout: 60_000 });
      await ask.getByText("$ echo from-bash > bash.txt").waitFor();
      await expect
        .poll(() => page.evaluate(() => document.activeElement?.getAttribute("role")))
        .toBe("alertdialog");
      for (let i = 0; i < 3; i++) await page.keyboard.press("Tab");
      expect(await page.evaluate(() => document.activeElement?.textContent)).toBe("Reject…");
      await page.keyboard.press("Enter");
      await page.keyboard.type("use printf instead");
      await page.keyboard.press("Control+Enter");
      const events = await collectUntil(t.client, s2.id, untilTurnFinished(1));
      expect(events.find((e) => e.type === "permission.replied")?.data).toMatchObject({
        reply: "reject",
        message: "use printf instead",
      });
      expect(existsSync(join(s2.workspacePath, "bash.txt"))).toBe(false);
      expect(w.problems).toEqual([]);
    });
  });

  it("queues a follow-up while the agent works, sends it when idle, and forks from a message", async () => {
    await scenarioOn(w, "queue-fork", async () => {
      const { page } = w;
      const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "slow please" });
      await open(s.id);
      await page.getByText("three", { exact: false }).waitFor({ timeout: 60_000 });
      await page.getByLabel("Follow-up").fill("remember the codeword is kiwi");
      await page.getByRole("button", { name: "Queue" }).click();
      // Queued, not sent: the first turn is still running.
      await page.getByTestId("queued").getByText("remember the codeword is kiwi").waitFor();
      expect((await t.client.sessions.get(s.id)).status).not.toBe("idle");
      await shoot(page, "session-queued");
      await page.getByText("Noted, I will remember it.").waitFor({ timeout: 60_000 });
      expect(await page.getByTestId("queued").count()).toBe(0);
      const turns = (await t.client.sessions.events(s.id)).items.filter((e) => e.type === "turn.started");
      expect(turns.map((e) => e.type === "turn.started" && e.data.prompt)).toEqual([
        "slow please",
        "remember the codeword is kiwi",
      ]);
      await expect.poll(status, { timeout: 30_000 }).toBe("idle");
      await expect.poll(() => page.getByTestId("usage").textContent()).not.toMatch(/^0 tokens/);

      // Fork before the second prompt: the new session has the first turn and not the codeword.
      await page.getByRole("button", { name: "Fork from here" }).nth(1).click();
      await page.waitForURL((u) => /\/s\/ses_/.test(u.pathname) && !u.pathname.includes(s.id));
      const forkId = new URL(page.url()).pathname.split("/")[2]!;
      await page.getByText(`This session was forked from ${s.id}.`).waitFor();
      const forked = await t.client.sessions.messages(forkId);
      const said = JSON.stringify(forked);
      expect(said).toContain(SLOW_TEXT);
      expect(said).not.toContain("kiwi");
      expect(w.problems).toEqual([]);
    });
  });

  it("renders 10,000 events as a virtualised list with highlighted code, and scrolls to either end", async () => {
    await scenarioOn(w, "virtualised", async () => {
      const { page } = w;
      const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "hello" });
      await collectUntil(t.client, s.id, untilTurnFinished(1));
      const bodies: EventBody[] = [];
      for (let i = 0; i < 10_000; i++)
        bodies.push({
          type: "text.completed",
          data: {
            messageId: `msg_bulk${Math.floor(i / 100)}`,
            partId: `prt_bulk${i}`,
            text: i === 0 ? "First row:\n\n```ts\nconst answer: number = 42;\n```" : `row ${i} of the bulk`,
          },
        });
      for (let i = 0; i < bodies.length; i += 1000)
        await t.server.services.events.append(s.id, bodies.slice(i, i + 1000));
      await open(s.id);
      const list = page.getByTestId("transcript");
      await expect.poll(() => list.getAttribute("data-rows"), { timeout: 60_000 }).toBe(String(10_002));
      await page.getByText("row 9999 of the bulk").waitFor();
      // Only what is near the viewport is in the DOM.
      expect(await list.locator("[data-index]").count()).toBeLessThan(80);
      await page.evaluate(() => window.scrollTo({ top: 0 }));
      await page.getByText("First row:").waitFor();
      expect(await page.locator("code .hljs-keyword").first().textContent()).toBe("const");
      await page.evaluate(() => window.scrollTo({ top: document.documentElement.scrollHeight / 2 }));
      await page
        .getByText(/^row 5\d{3} of the bulk$/)
        .first()
        .waitFor();
      expect(await list.locator("[data-index]").count()).toBeLessThan(80);
      expect(w.problems).toEqual([]);
    });
  });
});
