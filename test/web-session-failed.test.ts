import { chmodSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
import {
  collectUntil,
  deadline,
  makeRepo,
  ROOT,
  SHARED_NPM_CACHE,
  startTestServer,
  type TestServer,
  tempDir,
} from "./support.ts";

describe.skipIf(!haveChromium)("a session that failed to start, in a real browser", () => {
  let t: TestServer;
  let browser: Browser;
  let context: BrowserContext;
  let w: WatchedPage;
  let dir: string;
  let broken: string;
  beforeAll(async () => {
    // The agent server "fails to start" while a flag file exists: a script in OpenCode's place that
    // exits 1, or runs the real one once the flag is gone. On the local runtime, so the script can
    // reach the real binary (the sandbox mounts only the binary's own directory).
    dir = tempDir("failing-opencode");
    broken = join(dir, "broken");
    writeFileSync(broken, "");
    const bin = join(dir, "opencode");
    writeFileSync(
      bin,
      `#!/bin/sh\nif [ -e '${broken}' ]; then echo 'opencode: cannot start (test)' >&2; exit 1; fi\nexec '${join(ROOT, "node_modules/.bin/opencode")}' "$@"\n`,
    );
    chmodSync(bin, 0o755);
    t = await startTestServer({
      scenario,
      config: {
        runtime: "local",
        harness: {
          readyTimeoutMs: deadline(120_000),
          stopGraceMs: 5_000,
          healthIntervalMs: 5_000,
          startAttempts: 1,
          opencodeBin: bin,
          npmCacheDir: SHARED_NPM_CACHE,
        },
      },
    });
    browser = await launchBrowser();
    context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    w = await watchedPage(context);
    await login(w.page, t.url, t.token);
  });
  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("says what failed once, where the message box was, and retries it from there", async () => {
    await scenarioOn(w, "session-failed", async () => {
      const { page } = w;
      const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "hello" });
      await collectUntil(t.client, s.id, (e) => e.type === "session.status" && e.data.status === "failed", {
        timeoutMs: 120_000,
      });
      const error = (await t.client.sessions.get(s.id)).error;
      expect(error?.message).toBeTruthy();
      await page.goto(`${t.url}/s/${s.id}`);
      await page.getByTestId("transcript").waitFor({ state: "attached" });
      await expect.poll(() => page.getByTestId("status").textContent()).toBe("failed");

      // The composer says what failed and offers Retry, not a queue for a turn that will never come.
      const failed = page.getByRole("status", { name: "Session failed" });
      await failed.waitFor();
      expect(await failed.textContent()).toContain(error!.message.split("\n")[0]);
      expect(await page.getByRole("button", { name: "Queue" }).count()).toBe(0);
      expect(await page.getByLabel("Follow-up").count()).toBe(0);
      expect(await page.getByText("Waiting for the agent").count()).toBe(0);
      // ...and the error is on the page once.
      const firstLine = error!.message.split("\n")[0]!;
      expect(await page.getByText(firstLine, { exact: false }).count()).toBe(1);
      await shoot(page, "session-failed");

      // The agent server can start now: Retry starts the session over, and its first turn runs.
      rmSync(broken);
      await failed.getByRole("button", { name: "Retry" }).click();
      await page.getByText("Hello from the scripted model.").waitFor({ timeout: deadline(120_000) });
      await expect.poll(() => page.getByTestId("status").textContent(), { timeout: 60_000 }).toBe("idle");
      await failed.waitFor({ state: "detached" });
      await page.getByRole("button", { name: "Send" }).waitFor();
      expect(await page.getByText(firstLine, { exact: false }).count()).toBe(1);
      expect(w.problems).toEqual([]);
    });
  });
});
