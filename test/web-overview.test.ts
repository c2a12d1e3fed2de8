import { FlotillaClient } from "@flotilla/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
import { collectUntil, makeRepo, startTestServer, type TestServer, untilTurnFinished } from "./support.ts";

// The page formats counts with thousands separators; compare them as numbers.
const num = (text: string | null) => Number((text ?? "").replace(/[^\d.]/g, ""));
const LIVE = { timeout: 60_000 };

describe.skipIf(!haveChromium)("overview, settings and the sessions list in a real browser", () => {
  let t: TestServer;
  let browser: Browser;
  let context: BrowserContext;
  let w: WatchedPage;
  let page: Page;
  const hangs: string[] = [];

  beforeAll(async () => {
    t = await startTestServer({ scenario });
    browser = await launchBrowser();
    context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    w = await watchedPage(context);
    page = w.page;
    await login(page, t.url, t.token);
  });
  afterAll(async () => {
    for (const id of hangs) await t?.client.sessions.abort(id).catch(() => {});
    await context?.close();
    await browser?.close();
    await t?.close();
  });

  const nav = (name: string) => page.getByRole("navigation", { name: "Main" }).getByRole("link", { name });
  const stat = (id: string) => page.getByTestId(id);

  it("the overview shows what the API says, and follows sessions as they run, finish and fail", async () => {
    await scenarioOn(w, "overview", async () => {
      await nav("Overview").click();
      await stat("stat-running").waitFor();
      const before = await t.client.overview();
      expect(num(await stat("stat-running").textContent())).toBe(before.sessions.running);
      expect(num(await stat("stat-queued").textContent())).toBe(before.queue.depth);
      expect(num(await stat("tokens-input").textContent())).toBe(before.today.tokens.input);
      await page.getByText("Nothing has failed").waitFor();

      // A finished session: the idle count and today's tokens move, with no reload.
      const hello = await t.client.sessions.create({ repo: makeRepo(), prompt: "write hello please" });
      await collectUntil(t.client, hello.id, untilTurnFinished(1));
      const done = await t.client.overview();
      expect(done.sessions.idle).toBe(1);
      expect(done.today.tokens.input).toBeGreaterThan(0);
      await expect.poll(async () => num(await stat("sessions-idle").textContent()), LIVE).toBe(1);
      await expect
        .poll(async () => num(await stat("tokens-input").textContent()), LIVE)
        .toBe(done.today.tokens.input);
      expect(num(await stat("tokens-output").textContent())).toBe(done.today.tokens.output);
      expect(num(await stat("cost-today").textContent())).toBeCloseTo(done.today.cost, 2);
      await expect
        .poll(async () => num(await stat("harness-count").textContent()), LIVE)
        .toBe((await t.client.overview()).harnesses.items.length);

      // A running turn counts as running until it is aborted.
      const hang = await t.client.sessions.create({ repo: makeRepo(), prompt: "hang on a moment" });
      hangs.push(hang.id);
      await expect.poll(async () => num(await stat("stat-running").textContent()), LIVE).toBe(1);
      await t.client.sessions.abort(hang.id);
      await expect.poll(async () => num(await stat("stat-running").textContent()), LIVE).toBe(0);

      // A failed turn shows among the recent failures, with its error, and links to the session.
      const bad = await t.client.sessions.create({ repo: makeRepo(), prompt: "fail auth now" });
      await collectUntil(t.client, bad.id, untilTurnFinished(1));
      const failure = page.getByTestId("failure").filter({ hasText: "fail auth now" });
      await failure.waitFor(LIVE);
      expect(await failure.textContent()).toMatch(/invalid api key/);
      await expect.poll(async () => num(await stat("stat-failed").textContent()), LIVE).toBe(1);
      await shoot(page, "overview");
      await failure.getByRole("link").click();
      await page.waitForURL(`${t.url}/s/${bad.id}`);
      expect(w.problems).toEqual([]);
    });
  });

  it("settings: a token made in the form works against the API until it is revoked from the page", async () => {
    await scenarioOn(w, "settings", async () => {
      await nav("Settings").click();
      await page.getByTestId("whoami").getByText("admin", { exact: true }).waitFor();
      await page.getByTestId("default-model").getByText("scripted/scripted-1").waitFor();

      await page.getByLabel("Name").fill("browser bot");
      await page.getByLabel("Role").selectOption("member");
      await page.getByRole("button", { name: "Create token" }).click();
      const shown = page.getByTestId("new-token");
      await shown.waitFor();
      await page.getByText("you will not see it again").waitFor();
      const token = await shown.inputValue();
      expect(token).toMatch(/^flt_/);
      const bot = new FlotillaClient({ baseUrl: t.url, token });
      expect((await bot.sessions.list()).items.length).toBeGreaterThan(0);

      const row = page.getByTestId("token-row").filter({ hasText: "browser bot" });
      await row.waitFor();
      expect(await row.textContent()).toContain("member");
      expect(await row.textContent()).toContain(token.slice(0, 8));
      // Leave the panel before any screenshot: the secret is shown once, and not in an artifact.
      await page.getByRole("button", { name: "Done" }).click();
      await shown.waitFor({ state: "detached" });

      // Revoking asks first; cancelling keeps the token.
      await row.getByRole("button", { name: "Revoke" }).click();
      const confirm = page.getByRole("alertdialog", { name: "Revoke browser bot" });
      await confirm.getByRole("button", { name: "Cancel" }).click();
      await confirm.waitFor({ state: "detached" });
      expect((await bot.sessions.list()).items.length).toBeGreaterThan(0);

      await row.getByRole("button", { name: "Revoke" }).click();
      await confirm.getByRole("button", { name: "Revoke token" }).click();
      await row.getByText("revoked", { exact: true }).waitFor();
      await expect(bot.sessions.list()).rejects.toMatchObject({ status: 401, code: "unauthorized" });
      expect((await t.client.tokens.list()).find((x) => x.name === "browser bot")?.revokedAt).not.toBeNull();
      await shoot(page, "settings");
      expect(w.problems).toEqual([]);
    });
  });

  it("sessions: the list filters by status and by text", async () => {
    await scenarioOn(w, "sessions-filtered", async () => {
      const hang = await t.client.sessions.create({ repo: makeRepo(), prompt: "hang until aborted" });
      hangs.push(hang.id);
      await nav("Sessions").click();
      const rows = page.getByRole("list", { name: "Sessions" }).getByRole("listitem");
      await rows.first().waitFor();
      const filters = page.getByRole("group", { name: "Filter by status" });

      await filters.getByRole("button", { name: /^Running/ }).click();
      await page.waitForURL(/\/s\?status=running$/);
      await expect
        .poll(() => rows.allTextContents(), LIVE)
        .toEqual([expect.stringContaining("hang until aborted")]);

      await filters.getByRole("button", { name: /^Idle/ }).click();
      await page.waitForURL(/\/s\?status=idle$/);
      const idle = (await t.client.sessions.list({ status: "idle" })).items;
      await expect.poll(() => rows.count(), LIVE).toBe(idle.length);
      expect((await rows.allTextContents()).some((x) => x.includes("hang until aborted"))).toBe(false);

      await page.getByLabel("Search sessions").fill("HELLO");
      await expect
        .poll(() => rows.allTextContents(), LIVE)
        .toEqual([expect.stringContaining("write hello please")]);
      await shoot(page, "sessions-filtered");

      await page.getByLabel("Search sessions").fill("no such session anywhere");
      await page.getByText("No session matches these filters.").waitFor();
      await page.getByRole("button", { name: "Clear filters" }).click();
      await page.waitForURL(/\/s$/);
      await expect.poll(() => rows.count(), LIVE).toBe((await t.client.sessions.list()).items.length);
      expect(await page.getByLabel("Search sessions").inputValue()).toBe("");
      expect(w.problems).toEqual([]);
    });
  });
});
