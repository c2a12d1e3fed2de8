import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";

export type { Browser, BrowserContext, Page };

import { ROOT } from "./support.ts";

/**
 * The browser side of the UI tests: Debian's Chromium driven by playwright-core, screenshots into
 * artifacts/screenshots (not committed), and a record of every console error and page error.
 */
export const CHROMIUM = "/usr/bin/chromium";
export const SHOTS = join(ROOT, "artifacts/screenshots");
export const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI === "true")
  throw new Error(`${CHROMIUM} is missing: .ci/run installs Debian's chromium (apt-get install chromium)`);
if (!haveChromium) console.warn(`skipping the browser tests: no ${CHROMIUM} (apt-get install chromium)`);
if (!existsSync(join(ROOT, "packages/web/dist/index.html")))
  throw new Error("the web UI is not built: `npm test` builds it first (scripts/ensure-deps.mjs)");

export const DESKTOP = { width: 1440, height: 900 };
export const PHONE = { width: 390, height: 844 };

export async function launchBrowser(): Promise<Browser> {
  mkdirSync(SHOTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Nothing that phones out: this machine reaches only loopback.
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

/** A page that records what the browser complained about, so a test can assert there was nothing. */
export interface WatchedPage {
  page: Page;
  problems: string[];
}

export async function watchedPage(context: BrowserContext): Promise<WatchedPage> {
  const page = await context.newPage();
  const problems: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  return { page, problems };
}

/** Logs the context in through the login form (the cookie then serves every page of the context). */
export async function login(page: Page, url: string, token: string): Promise<void> {
  await page.goto(`${url}/login`);
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL(`${url}/`);
}

/** Screenshots the page at phone and desktop widths, then restores the desktop size. */
export async function shoot(page: Page, name: string): Promise<void> {
  await page.setViewportSize(PHONE);
  await page.screenshot({ path: join(SHOTS, `${name}-390.png`), fullPage: true });
  await page.setViewportSize(DESKTOP);
  await page.screenshot({ path: join(SHOTS, `${name}-1440.png`), fullPage: true });
}

/**
 * Runs a browser scenario; on failure saves what the page showed and adds what the browser said,
 * which is most of the diagnosis.
 */
export async function scenarioOn(w: WatchedPage, name: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    await w.page.screenshot({ path: join(SHOTS, `failure-${name}.png`), fullPage: true }).catch(() => {});
    throw new Error(`${(e as Error).message}\nbrowser problems: ${JSON.stringify(w.problems)}`, { cause: e });
  }
}
