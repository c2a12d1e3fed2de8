import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { EventBody } from "@flotilla/contracts";
import type { Locator } from "playwright-core";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { scenario } from "../packages/server/test/scenario.ts";
import {
  type Browser,
  type BrowserContext,
  DESKTOP,
  haveChromium,
  launchBrowser,
  login,
  PHONE,
  scenarioOn,
  shoot,
  type WatchedPage,
  watchedPage,
} from "./browser.ts";
import {
  collectUntil,
  deadline,
  makeRepo,
  startTestServer,
  type TestServer,
  untilTurnFinished,
} from "./support.ts";
import { TcpProxy } from "./tcp-proxy.ts";

/**
 * Whether a person can see all of an element: inside the viewport and on top at its top, middle and
 * bottom (not under the pinned composer or anything else).
 */
const unobstructed = (l: Locator) =>
  l.evaluate((el) => {
    const r = el.getBoundingClientRect();
    if (r.height === 0 || r.top < 0 || r.bottom > window.innerHeight) return false;
    const x = r.left + r.width / 2;
    return [r.top + 2, r.top + r.height / 2, r.bottom - 2].every((y) => {
      const hit = document.elementFromPoint(x, y);
      return hit !== null && (hit === el || el.contains(hit));
    });
  });

const SLOW_TEXT =
  "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen";

describe.skipIf(!haveChromium)("the session page in a real browser", () => {
  let t: TestServer;
  let browser: Browser;
  let context: BrowserContext;
  let proxy: TcpProxy;
  let w: WatchedPage;
  /**
   * One repository, so one project and one harness for every session of this file: no test kills
   * its harness, changes the repository (each session has a workspace of its own) or counts what a
   * project holds. A repository per session meant eight harness boots, one after another, each
   * 7-23 s on a loaded machine.
   */
  let repo: string;
  beforeAll(async () => {
    t = await startTestServer({ scenario, config: { permission: "ask" } });
    repo = makeRepo();
    // The shared harness boots while the browser starts, and is ready before the first test: no
    // test then waits on a cold harness, whichever runs first.
    const warmUp = await t.client.sessions.create({ repo, prompt: "hello" });
    // The browser reaches the server only through the proxy, so the test can cut its streams.
    proxy = await new TcpProxy(new URL(t.url)).start();
    browser = await launchBrowser();
    context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    w = await watchedPage(context);
    await login(w.page, proxy.url, t.token);
    // A cold harness may take up to its ready timeout (120 s) on a loaded machine.
    await collectUntil(t.client, warmUp.id, untilTurnFinished(1), { timeoutMs: 180_000 });
  }, deadline(300_000));
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
      const s = await t.client.sessions.create({ repo, prompt: "slow please" });
      await open(s.id);
      const text = w.page.getByTestId("assistant-text");
      await w.page.getByText("three", { exact: false }).waitFor({ timeout: deadline(60_000) });
      proxy.refuse();
      expect(proxy.drop()).toBeGreaterThan(0);
      // Cut while the model was still mid-sentence: what follows arrives only after the reconnect.
      expect(await text.textContent()).not.toContain("sixteen");
      await w.page.getByRole("status").filter({ hasText: "Reconnecting" }).first().waitFor();
      // Let the turn run on (and finish) while the browser is cut off.
      await collectUntil(t.client, s.id, untilTurnFinished(1));
      proxy.accept();
      await expect.poll(status, { timeout: deadline(30_000) }).toBe("idle");
      await expect.poll(async () => (await text.allTextContents()).map((x) => x.trim())).toEqual([SLOW_TEXT]);
      await w.page.getByText("live", { exact: true }).waitFor();
      // The cut streams are reported by the browser as failed loads; nothing else may complain.
      expect(w.problems.filter((p) => !/net::ERR_/.test(p))).toEqual([]);
    });
  });

  it("stays live on a session whose history holds an error event", async () => {
    const s = await t.client.sessions.create({ repo, prompt: "fail auth now" });
    await collectUntil(t.client, s.id, untilTurnFinished(1));
    await open(s.id);
    // The error is shown in the transcript...
    await w.page
      .getByText(/invalid api key/)
      .first()
      .waitFor();
    // Said once: the harness's error, the turn's end and the status after it carry the same error.
    expect(
      await w.page
        .getByTestId("transcript")
        .getByText(/invalid api key/)
        .count(),
    ).toBe(1);
    // ...and the stream that carried it is healthy: an SSE frame named `error` used to reach
    // EventSource's failure handler and leave the badge at "Reconnecting…" for good.
    await w.page.getByText("live", { exact: true }).waitFor();
    expect(await w.page.getByRole("status").filter({ hasText: "Reconnecting" }).count()).toBe(0);
  });

  it("answers a permission by keyboard alone: allow once, then reject with a message", async () => {
    await scenarioOn(w, "keyboard", async () => {
      const { page } = w;
      const s = await t.client.sessions.create({ repo, prompt: "write hello please" });
      await open(s.id);
      const ask = page.getByRole("alertdialog", { name: "Permission request" });
      await ask.waitFor({ timeout: deadline(60_000) });
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
      await page.getByText("I wrote hello.txt for you.").waitFor({ timeout: deadline(60_000) });
      await expect.poll(() => page.title()).not.toMatch(/Needs approval/);
      expect(await page.locator('link[rel="icon"]').getAttribute("href")).toBe("/favicon.svg");

      const s2 = await t.client.sessions.create({ repo, prompt: "run a command please" });
      await open(s2.id);
      await ask.waitFor({ timeout: deadline(60_000) });
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

  it("a tool waiting for permission says so; a rejected edit reads as not applied, within its column, after a reject box in view", async () => {
    await scenarioOn(w, "rejected-edit", async () => {
      const { page } = w;
      // Two turns first: the conversation is then longer than a phone's screen.
      const s = await t.client.sessions.create({ repo, prompt: "hello" });
      await collectUntil(t.client, s.id, untilTurnFinished(1));
      await t.client.sessions.send(s.id, { text: "hello again" });
      await collectUntil(t.client, s.id, untilTurnFinished(2));
      await t.client.sessions.send(s.id, { text: "edit readme please" });
      await open(s.id);
      const ask = page.getByRole("alertdialog", { name: "Permission request" });
      await ask.waitFor({ timeout: deadline(60_000) });
      // The edit waits on the person, not on the agent: its line says so (the request names its call).
      const edit = page.getByTestId("tool-row").filter({ hasText: "README.md" });
      await expect.poll(() => edit.locator("summary").textContent()).toContain("waiting for permission");
      expect(await edit.locator("summary").textContent()).not.toContain("running");

      // On a phone, the reject box opens under the pinned composer's edge: it is brought into view.
      await page.setViewportSize(PHONE);
      await page.evaluate(() => window.scrollTo({ top: document.documentElement.scrollHeight }));
      await ask.getByRole("button", { name: "Reject…" }).click();
      const box = ask.getByLabel("Message to the agent");
      const send = ask.getByRole("button", { name: "Reject with message" });
      await box.waitFor();
      await expect.poll(() => unobstructed(box)).toBe(true);
      await expect.poll(() => unobstructed(send)).toBe(true);
      await page.keyboard.type(
        "no: keep the heading exactly as it is written today, and say so in the reply",
      );
      await send.click();
      await collectUntil(t.client, s.id, untilTurnFinished(3));
      await page.setViewportSize(DESKTOP);

      // The diff is still there to read, as a change that did not happen.
      await expect.poll(() => edit.locator("summary").textContent()).toContain("rejected");
      const rejected = page.getByRole("region", { name: "Rejected change to README.md", exact: true });
      await rejected.waitFor();
      expect(await rejected.textContent()).toMatch(/not applied/i);
      expect(await page.getByRole("region", { name: "Change to README.md", exact: true }).count()).toBe(0);
      const added = rejected.getByText("# scratch, edited by the agent");
      expect(await added.evaluate((el) => getComputedStyle(el).textDecorationLine)).toContain("line-through");
      expect(readFileSync(join(s.workspacePath, "README.md"), "utf8")).toBe("# scratch\n");

      // Its line, with the long rejection, stays within the conversation's column, on a phone too.
      const within = () =>
        edit.evaluate((el) => {
          const column = document.querySelector('[data-testid="transcript"]')!.getBoundingClientRect();
          const summary = el.querySelector("summary")!;
          return (
            el.getBoundingClientRect().right <= column.right + 0.5 &&
            summary.scrollWidth <= summary.clientWidth + 0.5 &&
            document.documentElement.scrollWidth <= window.innerWidth
          );
        });
      expect(await within()).toBe(true);
      await shoot(page, "session-rejected");
      await page.setViewportSize(PHONE);
      expect(await within()).toBe(true);
      await page.setViewportSize(DESKTOP);
      expect(w.problems).toEqual([]);
    });
  });

  it("says an aborted turn once", async () => {
    await scenarioOn(w, "aborted", async () => {
      const { page } = w;
      const s = await t.client.sessions.create({ repo, prompt: "hang please" });
      await open(s.id);
      await page.getByText("Working on it").waitFor({ timeout: deadline(60_000) });
      await page.getByRole("button", { name: "Abort" }).click();
      // The status comes after the error and the turn's end: by then all three have been read.
      await expect.poll(status, { timeout: deadline(60_000) }).toBe("idle");
      const transcript = page.getByTestId("transcript");
      expect(await transcript.getByText(/abort/i).allTextContents()).toEqual(["Turn aborted"]);
      expect(w.problems).toEqual([]);
    });
  });

  it("queues a follow-up while the agent works, sends it when idle, and forks from a message", async () => {
    await scenarioOn(w, "queue-fork", async () => {
      const { page } = w;
      const s = await t.client.sessions.create({ repo, prompt: "slow please" });
      await open(s.id);
      await page.getByText("three", { exact: false }).waitFor({ timeout: deadline(60_000) });
      await page.getByLabel("Follow-up").fill("remember the codeword is kiwi");
      await page.getByRole("button", { name: "Queue" }).click();
      // Queued, not sent: the first turn is still running.
      await page.getByTestId("queued").getByText("remember the codeword is kiwi").waitFor();
      expect((await t.client.sessions.get(s.id)).status).not.toBe("idle");
      await shoot(page, "session-queued");
      await page.getByText("Noted, I will remember it.").waitFor({ timeout: deadline(60_000) });
      expect(await page.getByTestId("queued").count()).toBe(0);
      const turns = (await t.client.sessions.events(s.id)).items.filter((e) => e.type === "turn.started");
      expect(turns.map((e) => e.type === "turn.started" && e.data.prompt)).toEqual([
        "slow please",
        "remember the codeword is kiwi",
      ]);
      await expect.poll(status, { timeout: deadline(30_000) }).toBe("idle");
      await expect.poll(() => page.getByTestId("usage").textContent()).not.toMatch(/^0 tokens/);

      // Fork before the second prompt: the new session has the first turn and not the codeword.
      await page.getByRole("button", { name: "Fork from here" }).nth(1).click();
      await page.waitForURL((u) => /\/s\/ses_/.test(u.pathname) && !u.pathname.includes(s.id));
      const forkId = new URL(page.url()).pathname.split("/")[2]!;
      // The notice names the parent (and says what the two share).
      await page
        .getByText(`This session was forked from ${s.id}; it shares that session's workspace`)
        .waitFor();
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
      const s = await t.client.sessions.create({ repo, prompt: "hello" });
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
      await expect
        .poll(() => list.getAttribute("data-rows"), { timeout: deadline(60_000) })
        .toBe(String(10_002));
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
