import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
import { deadline, startTestServer, type TestServer } from "./support.ts";

/**
 * The audit log in the UI (issue "Teams": API, CLI and UI views with filters): an admin finds the
 * Audit tab under Settings, filters by action, and the chain's verdict changes when a row is
 * altered in the database.
 */
describe.skipIf(!haveChromium)("the audit log in a real browser", () => {
  let t: TestServer;
  let browser: Browser;
  let context: BrowserContext;
  let w: WatchedPage;
  let page: Page;
  let db: pg.Client;

  beforeAll(async () => {
    t = await startTestServer({ scenario: { rules: [], default: [{ text: "ok" }] } });
    db = new pg.Client({ connectionString: t.db });
    await db.connect();
    browser = await launchBrowser();
    context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    w = await watchedPage(context);
    page = w.page;
    await login(page, t.url, t.token);
  }, deadline(180_000));
  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await db?.end();
    await t?.close();
  });

  it("lists and filters the rows, and verifies the chain", async () => {
    await scenarioOn(w, "audit", async () => {
      const made = await t.client.tokens.create("seen in the ui", "member");
      await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Settings" }).click();
      await page.getByRole("navigation", { name: "Settings" }).getByRole("link", { name: "Audit" }).click();
      await page.waitForURL(`${t.url}/settings/audit`);
      const rows = page.getByTestId("audit-row");
      // The login this page came in by, and the token just made.
      await expect.poll(() => rows.filter({ hasText: "auth.login" }).count()).toBe(1);
      await expect.poll(() => rows.filter({ hasText: made.info.id }).count()).toBe(1);

      await page.getByPlaceholder("token.").fill("token.");
      await page.getByRole("button", { name: "Filter" }).click();
      await expect.poll(() => rows.filter({ hasText: "auth.login" }).count()).toBe(0);
      await expect.poll(() => rows.filter({ hasText: made.info.id }).count()).toBe(1);

      await page.getByRole("button", { name: "Verify chain" }).click();
      await expect.poll(() => page.getByTestId("audit-verdict").textContent()).toMatch(/^Intact: \d+ rows/);
      await shoot(page, "settings-audit");

      await db.query("begin");
      await db.query("set local session_replication_role = replica");
      await db.query(`update audit_events set detail = '{"forged":true}' where seq = 2`);
      await db.query("commit");
      await page.getByRole("button", { name: "Verify chain" }).click();
      await expect
        .poll(() => page.getByTestId("audit-verdict").textContent())
        .toMatch(/^Tampered at seq 2: row 2 was altered/);
      expect(w.problems).toEqual([]);
    });
  });
});
