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
import { FakeGitHub, forgeSettings } from "./github/fake-github.ts";
import { deadline, startTestServer, type TestServer } from "./support.ts";

const TOKEN = `ghp_${"s3cr3t".repeat(6)}`;

describe.skipIf(!haveChromium)("pushing a session's branch and its pull request, in a real browser", () => {
  let gh: FakeGitHub;
  let t: TestServer;
  let browser: Browser;
  let context: BrowserContext;
  let w: WatchedPage;
  let other: WatchedPage;
  beforeAll(async () => {
    // GitHub on loopback, set up as packages/server/test/pull-request.test.ts does.
    gh = new FakeGitHub(TOKEN);
    await gh.start();
    gh.createRepo("acme", "widget");
    t = await startTestServer({
      scenario,
      config: {
        publicUrl: "http://flotilla.test:7700",
        forges: [forgeSettings(gh, "github")],
      },
    });
    browser = await launchBrowser();
    context = await browser.newContext({ viewport: DESKTOP });
    w = await watchedPage(context);
    // A second tab on the session: what it shows of the pull request came from the `git` events.
    other = await watchedPage(context);
    await login(w.page, t.url, t.token);
  });
  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await t?.close();
    await gh?.close();
  });

  it("pushes, opens a draft pull request and follows its checks from the Changes tab", async () => {
    await scenarioOn(w, "pr", async () => {
      const { page } = w;
      const repo = gh.cloneUrl("acme", "widget");
      const s = await t.client.sessions.create({ repo, prompt: "write hello" });
      await page.goto(`${t.url}/s/${s.id}/changes`);
      await other.page.goto(`${t.url}/s/${s.id}`);
      const panel = page.getByTestId("land-panel");
      const push = panel.getByRole("button", { name: "Push", exact: true });
      // The turn ends with hello.txt written and uncommitted: Push is offered, and says where to.
      await panel.getByRole("button", { name: "Push", exact: true, disabled: false }).waitFor({
        timeout: deadline(120_000),
      });
      const remote = panel.getByTestId("branch-remote");
      expect(await remote.textContent()).toContain(repo);
      expect(await remote.textContent()).toContain("not pushed yet");
      // A URL repository: nothing to merge into locally, a forge to propose to.
      expect(await panel.getByRole("button", { name: /^Merge/ }).count()).toBe(0);

      await push.click();
      const result = panel.getByTestId("land-result");
      await result.getByText(/pushed flotilla\//).waitFor({ timeout: deadline(30_000) });
      const branch = `flotilla/${s.id}`;
      const head = (await t.client.sessions.branch(s.id)).head;
      expect(gh.ref("acme", "widget", branch)).toBe(head);
      // The uncommitted change was committed first, and the panel says it was pushed.
      expect(await result.textContent()).toMatch(/^Committed [0-9a-f]{7} \(1 file\), then pushed/);
      await remote.getByText(`pushed ${head.slice(0, 7)}`).waitFor({ timeout: deadline(30_000) });
      expect(await remote.textContent()).not.toContain("changed since");

      // Open the pull request through the dialog: a draft by default, title and base left to the server.
      await panel.getByRole("button", { name: "Open pull request…" }).click();
      const dialog = page.getByRole("dialog", { name: "Open a pull request" });
      await dialog.waitFor();
      expect(await dialog.getByLabel("Title").inputValue()).toBe("");
      expect(await dialog.getByLabel("Base branch").inputValue()).toBe("");
      expect(await dialog.getByRole("checkbox", { name: /Draft/ }).isChecked()).toBe(true);
      await page.screenshot({ path: "/tmp/pr-dialog.png" });
      await dialog.getByRole("button", { name: "Open pull request", exact: true }).click();
      await dialog.waitFor({ state: "hidden", timeout: deadline(30_000) });
      expect(gh.pulls).toHaveLength(1);
      expect(gh.pulls[0]).toMatchObject({ number: 1, draft: true, head: branch, base: "main" });

      const pr = (await t.client.sessions.branch(s.id)).pullRequest!;
      expect(pr).toMatchObject({ number: 1, title: "write hello", draft: true });
      const row = panel.getByTestId("pull-request");
      const link = row.getByRole("link", { name: "#1 write hello" });
      await link.waitFor();
      expect(await link.getAttribute("href")).toBe(pr.url);
      expect(await row.getByTestId("pr-state").textContent()).toBe("draft");
      expect(await row.getByTestId("pr-checks").count()).toBe(0); // no checks yet
      // Once it is open, the button to open one is gone; Push stays, to update it.
      expect(await panel.getByRole("button", { name: "Open pull request…" }).count()).toBe(0);
      // The session's header says so on every tab, this one and the other (from the git event).
      for (const p of [page, other.page]) {
        const badge = p.getByTestId("session-pr");
        await badge.getByRole("link", { name: "PR #1" }).waitFor({ timeout: deadline(30_000) });
        expect(await badge.getByTestId("pr-state").textContent()).toBe("draft");
      }

      // CI reports on the head commit; Refresh reads it from the forge.
      gh.statuses.set(pr.headSha, [{ state: "success", context: "ci" }]);
      await row.getByRole("button", { name: "Refresh" }).click();
      await row
        .getByTestId("pr-checks")
        .getByText("✓ 1/1")
        .waitFor({ timeout: deadline(30_000) });
      // The server logged the change as a git event: the other tab's header follows it.
      await other.page
        .getByTestId("session-pr")
        .getByTestId("pr-checks")
        .getByText("✓ 1/1")
        .waitFor({ timeout: deadline(30_000) });
      // The conversation shows the pull request's events, its address a link.
      const notices = other.page.getByTestId("git-notice");
      await notices.filter({ hasText: "checks: success" }).waitFor({ timeout: deadline(30_000) });
      expect(
        await notices.filter({ hasText: "draft pull request #1" }).getByRole("link").getAttribute("href"),
      ).toBe(pr.url);
      await page.screenshot({ path: "/tmp/pr.png", fullPage: true });
      await other.page.screenshot({ path: "/tmp/pr-conversation.png", fullPage: true });
      expect(gh.violations).toEqual([]);
      expect(w.problems).toEqual([]);
      expect(other.problems).toEqual([]);
    });
  });

  it("submits a task that opens a pull request on success, and its page links to it", async () => {
    await scenarioOn(w, "pr-task", async () => {
      const { page } = w;
      await page.goto(`${t.url}/t`);
      await page.getByRole("button", { name: "New task" }).click();
      const form = page.getByRole("dialog", { name: "New task" });
      await form.waitFor();
      await form.getByLabel("Repository").fill(gh.cloneUrl("acme", "widget"));
      await form.getByLabel("Prompt").fill("write hello");
      const commit = form.getByRole("checkbox", { name: /Commit on success/ });
      expect(await commit.isChecked()).toBe(false);
      await form.getByRole("checkbox", { name: /Open a pull request on success/ }).check();
      // A pull request is committed first: the commit box is ticked and fixed.
      expect(await commit.isChecked()).toBe(true);
      expect(await commit.isDisabled()).toBe(true);
      await page.screenshot({ path: "/tmp/pr-task-form.png" });
      await form.getByRole("button", { name: "Submit task" }).click();
      await page.waitForURL(/\/t\/tsk_[^/]+$/);
      const id = page.url().split("/").at(-1)!;
      expect(await t.client.tasks.get(id)).toMatchObject({ commit: true, pr: { draft: true } });

      // Live, no reload: the result shows the commit and the pull request once the task succeeds.
      const prLink = page.getByTestId("task-pr");
      await prLink.waitFor({ timeout: deadline(120_000) });
      const task = await t.client.tasks.get(id);
      expect(task.state).toBe("succeeded");
      const number = task.result!.pullRequest!.number;
      expect(await prLink.textContent()).toBe(`#${number}`);
      expect(await prLink.getAttribute("href")).toBe(task.result!.pullRequest!.url);
      expect(await page.getByTestId("task-commit").textContent()).toBe(task.result!.commit!.slice(0, 7));
      const pull = gh.pulls.find((p) => p.number === number);
      expect(pull).toMatchObject({ head: `flotilla/${task.sessionId}`, draft: true });
      expect(gh.ref("acme", "widget", pull!.head)).toBe(task.result!.commit);
      await page.screenshot({ path: "/tmp/pr-task.png", fullPage: true });
      expect(gh.violations).toEqual([]);
      expect(w.problems).toEqual([]);
    });
  });
});
