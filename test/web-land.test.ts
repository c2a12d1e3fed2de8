import { execFileSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scenario } from "../packages/server/test/scenario.ts";
import {
  type Browser,
  type BrowserContext,
  DESKTOP,
  haveChromium,
  launchBrowser,
  login,
  scenarioOn,
  type WatchedPage,
  watchedPage,
} from "./browser.ts";
import { deadline, makeRepo, startTestServer, type TestServer } from "./support.ts";

// The workspace belongs to the sandbox's user: git would refuse to read it as another's.
const git = (dir: string, ...args: string[]) =>
  execFileSync("git", ["-c", "safe.directory=*", "-C", dir, ...args], { encoding: "utf8" });

describe.skipIf(!haveChromium)("landing a session's work from the Changes tab, in a real browser", () => {
  let t: TestServer;
  let browser: Browser;
  let context: BrowserContext;
  let w: WatchedPage;
  let other: WatchedPage;
  beforeAll(async () => {
    t = await startTestServer({ scenario });
    browser = await launchBrowser();
    context = await browser.newContext({ viewport: DESKTOP });
    w = await watchedPage(context);
    // A second tab on the same Changes page: it does nothing itself, so what it shows came from the
    // session's `git` events.
    other = await watchedPage(context);
    await login(w.page, t.url, t.token);
  });
  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await t?.close();
  });

  it("commits with an edited message and author, then merges into main, with no reload", async () => {
    await scenarioOn(w, "land", async () => {
      const { page } = w;
      const repo = makeRepo();
      const s = await t.client.sessions.create({ repo, prompt: "write hello" });
      const changes = `${t.url}/s/${s.id}/changes`;
      await page.goto(changes);
      await other.page.goto(changes);
      const panel = page.getByTestId("land-panel");
      const commitButton = panel.getByRole("button", { name: "Commit…" });
      // The turn ends with hello.txt written: the panel and the diff follow it on their own.
      await panel
        .getByRole("button", { name: "Commit…", disabled: false })
        .waitFor({ timeout: deadline(120_000) });
      await panel.getByTestId("branch-summary").getByText("1 uncommitted file").waitFor();
      await page.getByTestId("changed-files").getByText("hello.txt").waitFor();
      expect(await panel.getByTestId("branch-name").textContent()).toMatch(/^flotilla\//);

      // Commit, through the dialog: the draft and the default author are there to edit.
      const state = await t.client.sessions.branch(s.id);
      await commitButton.click();
      const dialog = page.getByRole("dialog", { name: "Commit the session's changes" });
      await dialog.waitFor();
      const message = dialog.getByLabel("Message");
      expect((await message.inputValue()).trim()).not.toBe("");
      expect(await dialog.getByLabel("Author name").inputValue()).toBe(state.author.name);
      expect(await dialog.getByLabel("Author email").inputValue()).toBe(state.author.email);
      const trailer = `Co-authored-by: ${state.coAuthor.name} <${state.coAuthor.email}>`;
      expect(await dialog.getByTestId("co-author").textContent()).toBe(trailer);
      await message.fill("Say hello from the agent\n\nA file a person asked for, reviewed in the browser.");
      await dialog.getByLabel("Author name").fill("Ada Lovelace");
      await dialog.getByLabel("Author email").fill("ada@example.com");
      await page.screenshot({ path: "/tmp/land-commit-dialog.png" });
      await dialog.getByRole("button", { name: "Commit", exact: true }).click();
      await dialog.waitFor({ state: "hidden" });

      const [name, email, ...body] = git(s.workspacePath, "log", "-1", "--format=%an%n%ae%n%B")
        .trimEnd()
        .split("\n");
      expect([name, email]).toEqual(["Ada Lovelace", "ada@example.com"]);
      const text = body.join("\n");
      expect(text).toMatch(
        /^Say hello from the agent\n\nA file a person asked for, reviewed in the browser\.\n/,
      );
      expect(text).toContain(trailer);
      const sha = git(s.workspacePath, "rev-parse", "HEAD").trim();

      // Both tabs show the commit: this one because it made it, the other from the `git` event.
      for (const p of [page, other.page]) {
        const row = p.getByTestId("branch-commits").getByRole("listitem").first();
        await row.getByText("Say hello from the agent").waitFor({ timeout: deadline(30_000) });
        expect(await row.textContent()).toContain(sha.slice(0, 7));
        expect(await row.textContent()).toContain("Ada Lovelace");
        await p.getByTestId("branch-summary").getByText("0 uncommitted files").waitFor();
      }
      expect(await panel.getByTestId("land-result").textContent()).toContain(`Committed ${sha.slice(0, 7)}`);
      expect(await commitButton.isDisabled()).toBe(true);

      // Merge into main: the repository's main is the commit, and the page says so.
      await panel.getByRole("button", { name: /^Merge into main/ }).click();
      const merge = page.getByRole("dialog", { name: "Merge the session's branch" });
      await merge.waitFor();
      expect(await merge.getByLabel("Into branch").inputValue()).toBe("main");
      // main is checked out with a change of the user's own: refused, the file named, nothing moved.
      writeFileSync(join(repo, "README.md"), "# scratch, edited by the user\n");
      await merge.getByRole("button", { name: "Merge", exact: true }).click();
      const problem = merge.getByTestId("merge-problem");
      await problem
        .getByRole("listitem")
        .filter({ hasText: "README.md" })
        .waitFor({ timeout: deadline(30_000) });
      expect(await problem.textContent()).toMatch(/uncommitted changes to 1 file/);
      await page.screenshot({ path: "/tmp/land-refused.png" });
      expect(git(repo, "log", "main", "-1", "--format=%H").trim()).not.toBe(sha);
      git(repo, "checkout", "--", "README.md");
      await merge.getByRole("button", { name: "Merge", exact: true }).click();
      await merge.waitFor({ state: "hidden", timeout: deadline(30_000) });
      expect(git(repo, "log", "main", "-1", "--format=%H").trim()).toBe(sha);
      // main is checked out and was clean: the user's working tree now has the file.
      expect(existsSync(join(repo, "hello.txt"))).toBe(true);
      const result = panel.getByTestId("land-result");
      await expect.poll(() => result.textContent()).toMatch(/main/);
      expect(await result.textContent()).not.toMatch(/^Committed/);
      for (const p of [page, other.page])
        await p
          .getByTestId("branch-summary")
          .getByText(/merged into main/)
          .waitFor({ timeout: deadline(30_000) });
      await page.screenshot({ path: "/tmp/land.png", fullPage: true });

      // The conversation says what happened, one row per action, from the same events.
      await page
        .getByRole("navigation", { name: "Session" })
        .getByRole("link", { name: "Conversation" })
        .click();
      const notices = page.getByTestId("git-notice");
      await expect.poll(() => notices.count()).toBe(2);
      expect(await notices.first().textContent()).toContain(sha.slice(0, 7));
      await page.screenshot({ path: "/tmp/land-conversation.png", fullPage: true });

      // The browser logs the refused merge's 409 itself; nothing else may complain.
      expect(w.problems.filter((p) => !/status of 409 \(Conflict\)/.test(p))).toEqual([]);
      expect(other.problems).toEqual([]);
    });
  });
});
