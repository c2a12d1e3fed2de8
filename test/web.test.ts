import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scenario } from "../packages/server/test/scenario.ts";
import { makeRepo, ROOT, startTestServer, type TestServer, tempDir } from "./support.ts";

const CHROMIUM = "/usr/bin/chromium";
const SHOTS = join(ROOT, "artifacts/screenshots");
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI === "true")
  throw new Error(`${CHROMIUM} is missing: .ci/run installs Debian's chromium (apt-get install chromium)`);
if (!haveChromium) console.warn(`skipping the browser test: no ${CHROMIUM} (apt-get install chromium)`);
if (!existsSync(join(ROOT, "packages/web/dist/index.html")))
  throw new Error("the web UI is not built: `npm test` builds it first (scripts/ensure-deps.mjs)");

describe.skipIf(!haveChromium)("web UI in a real browser", () => {
  let t: TestServer;
  let context: BrowserContext;
  const profile = tempDir("chromium");
  beforeAll(async () => {
    t = await startTestServer({ scenario, config: { permission: "ask" } });
    // A persistent context is how Playwright takes a fresh --user-data-dir of our own.
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      viewport: { width: 1440, height: 900 },
      // A fresh profile per run, and nothing that phones out: this machine reaches only loopback.
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
      headless: true,
    });
    mkdirSync(SHOTS, { recursive: true });
  });
  afterAll(async () => {
    await context?.close();
    await t?.close();
    rmSync(profile, { recursive: true, force: true });
  });

  /** Screenshots the page at desktop and phone widths, then restores the desktop size. */
  async function shoot(page: Page, name: string) {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: join(SHOTS, `${name}-390.png`), fullPage: true });
    await page.setViewportSize({ width: 1440, height: 900 });
    await page.screenshot({ path: join(SHOTS, `${name}-1440.png`), fullPage: true });
  }

  it("logs in, starts a session, approves its edit, streams the answer and shows the change", async () => {
    const page = context.pages()[0] ?? (await context.newPage());
    const problems: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error") problems.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    try {
      // Not logged in: any page sends us to the login form.
      await page.goto(`${t.url}/`);
      await page.waitForURL(/\/login$/);
      await shoot(page, "login");
      await page.getByLabel("API token").fill(t.token);
      await page.getByRole("button", { name: "Log in" }).click();
      await page.waitForURL(`${t.url}/`);
      const cookies = await context.cookies();
      expect(cookies.find((c) => c.name === "flotilla_session")).toMatchObject({
        httpOnly: true,
        sameSite: "Strict",
      });

      await page.getByPlaceholder("/path/to/repo or a git URL").fill(makeRepo());
      await page.getByPlaceholder("What should the agent do?").fill("write hello please");
      await shoot(page, "sessions-new");
      await page.getByRole("button", { name: "Start session" }).click();
      await page.waitForURL(/\/s\/ses_[^/]+$/);

      const ask = page.getByRole("alertdialog", { name: "Permission request" });
      await ask.waitFor({ timeout: 60_000 });
      await shoot(page, "session-permission");
      await ask.getByRole("button", { name: "Allow once" }).click();
      await page.getByText("I wrote hello.txt for you.").waitFor({ timeout: 60_000 });
      await expect.poll(() => page.getByTestId("status").textContent(), { timeout: 30_000 }).toBe("idle");
      expect(await page.getByTestId("tool-row").first().textContent()).toContain("completed");
      await shoot(page, "session-done");

      await page.getByRole("link", { name: "Changes" }).click();
      await page.getByTestId("changed-files").getByText("hello.txt").waitFor();
      await page.getByText("+hello from the agent").waitFor();
      await shoot(page, "changes");

      await page.getByRole("link", { name: "Sessions" }).click();
      await page.getByText("write hello please").first().waitFor();
      await shoot(page, "sessions-list");
      expect(problems).toEqual([]);
    } catch (e) {
      // What the page showed and said when it failed is most of the diagnosis.
      await page.screenshot({ path: join(SHOTS, "failure.png"), fullPage: true }).catch(() => {});
      throw new Error(`${(e as Error).message}\nbrowser problems: ${JSON.stringify(problems)}`, { cause: e });
    }
  });
});
