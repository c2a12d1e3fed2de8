import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scenario } from "../packages/server/test/scenario.ts";
import {
  type Browser,
  DESKTOP,
  haveChromium,
  launchBrowser,
  login,
  type Page,
  PHONE,
  scenarioOn,
  shoot,
  watchedPage,
} from "./browser.ts";
import { makeRepo, startTestServer, type TestServer } from "./support.ts";

/** How wide the page is at a phone's width: wider than the screen means sideways scrolling. */
async function phoneScrollWidth(page: Page): Promise<number> {
  await page.setViewportSize(PHONE);
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  await page.setViewportSize(DESKTOP);
  return width;
}

const widthOf = (page: Page, testId: string) =>
  page.getByTestId(testId).evaluate((el) => el.getBoundingClientRect().width);

describe.skipIf(!haveChromium)("web UI in a real browser", () => {
  let t: TestServer;
  let browser: Browser;
  beforeAll(async () => {
    t = await startTestServer({ scenario, config: { permission: "ask" } });
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  it("logs in, starts a session, approves its edit, streams the answer and shows the change", async () => {
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    const w = await watchedPage(context);
    const { page } = w;
    await scenarioOn(w, "session", async () => {
      // Not logged in: any page sends us to the login form.
      await page.goto(`${t.url}/s`);
      await page.waitForURL(/\/login$/);
      await shoot(page, "login");
      await login(page, t.url, t.token);
      const cookies = await context.cookies();
      expect(cookies.find((c) => c.name === "flotilla_session")).toMatchObject({
        httpOnly: true,
        sameSite: "Strict",
      });

      await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Sessions" }).click();
      // The list is the page; starting a session is a dialog, closed until asked for.
      await page.getByRole("heading", { name: "Sessions" }).waitFor();
      expect(await page.getByPlaceholder("What should the agent do?").isVisible()).toBe(false);
      await page.getByRole("button", { name: "New session" }).click();
      const dialog = page.getByRole("dialog", { name: "New session" });
      await dialog.getByPlaceholder("/path/to/repo or a git URL").fill(makeRepo());
      await dialog.getByPlaceholder("What should the agent do?").fill("write hello please");
      await shoot(page, "sessions-new");
      await dialog.getByRole("button", { name: "Start session" }).click();
      // Straight to the new session.
      await page.waitForURL(/\/s\/ses_[^/]+$/);
      expect(await page.getByRole("dialog").count()).toBe(0);

      const ask = page.getByRole("alertdialog", { name: "Permission request" });
      await ask.waitFor({ timeout: 60_000 });
      await shoot(page, "session-permission");
      await ask.getByRole("button", { name: "Allow once" }).click();
      await page.getByText("I wrote hello.txt for you.").waitFor({ timeout: 60_000 });
      await expect.poll(() => page.getByTestId("status").textContent(), { timeout: 30_000 }).toBe("idle");
      expect(await page.getByTestId("tool-row").first().textContent()).toContain("completed");
      await shoot(page, "session-done");
      // A wide window is used (diffs deserve it), inside a padded column; a phone never scrolls sideways.
      expect(await widthOf(page, "transcript")).toBeGreaterThan(1300);
      expect(
        await page.getByTestId("transcript").evaluate((el) => el.getBoundingClientRect().left),
      ).toBeGreaterThanOrEqual(16);
      expect(await phoneScrollWidth(page)).toBeLessThanOrEqual(PHONE.width);

      await page.getByRole("link", { name: "Changes" }).click();
      await page.getByTestId("changed-files").getByText("hello.txt").waitFor();
      // Side by side on a wide screen: the new line on the right, nothing on the left.
      await page.getByTestId("split-diff").getByText("hello from the agent").waitFor();
      await shoot(page, "changes");
      expect(await widthOf(page, "split-diff")).toBeGreaterThan(1300);
      expect(await phoneScrollWidth(page)).toBeLessThanOrEqual(PHONE.width);
      await page.getByRole("button", { name: "Unified" }).click();
      await page.getByText("+hello from the agent").waitFor();

      await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Sessions" }).click();
      await page.getByText("write hello please").first().waitFor();
      await shoot(page, "sessions-list");
      expect(await phoneScrollWidth(page)).toBeLessThanOrEqual(PHONE.width);
      expect(w.problems).toEqual([]);
    });
    await context.close();
  });
});
