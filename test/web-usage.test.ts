import { randomBytes } from "node:crypto";
import { FlotillaClient } from "@flotilla/client";
import type { Task, UsageRow } from "@flotilla/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../packages/cli/test/cli.ts";
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
import {
  collectUntil,
  deadline,
  makeRepo,
  startTestServer,
  type TestServer,
  untilTurnFinished,
  waitFor,
} from "./support.ts";

/**
 * Spend, budgets and secrets in the UI (issue: "spend and remaining budget shown in the UI; secrets
 * set via API, CLI and UI"), against a real control plane whose gateway prices the scripted model:
 * the usage page's numbers are the API's, a task's budget meter shows what the gateway charged it,
 * and a secret added in the page is in the API's list, its value nowhere.
 */

// Dollars per million tokens: large enough that one scripted reply costs a visible amount.
const PRICE = { input: 3, output: 15 };
const LIVE = { timeout: deadline(60_000) };
const BUDGET = 5;

// Sums of costs in a different order (one project's filtered rows, or all grouped) differ in the
// last bits of a double: compare costs to a billionth of a dollar.
const nano = (usd: number) => Math.round(usd * 1e9) / 1e9;
// The page formats numbers with separators and a dollar sign; compare them as numbers.
const num = (text: string | null) => Number((text ?? "").replace(/[^\d.]/g, ""));

describe.skipIf(!haveChromium)("usage, budgets and secrets in a real browser", () => {
  let t: TestServer;
  let browser: Browser;
  let context: BrowserContext;
  let w: WatchedPage;
  let page: Page;
  const repoA = makeRepo();
  const repoB = makeRepo();
  let task: Task;
  let sessionB: string;

  beforeAll(async () => {
    t = await startTestServer({
      scenario: {
        rules: [
          {
            // Two model calls: the tool call, then the reply after its result.
            match: "^spend",
            steps: [
              { tool: "bash", args: { command: "echo spent", description: "spend" } },
              { text: "spent a little" },
            ],
          },
        ],
        default: [{ text: "ok" }],
      },
    });
    // The gateway reads prices when it starts: set one, then restart so calls cost something.
    const scripted = t.server.services.config.providers.scripted!;
    scripted.models["scripted-1"] = { ...scripted.models["scripted-1"]!, cost: PRICE };
    await t.restart();
    browser = await launchBrowser();
    context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    w = await watchedPage(context);
    page = w.page;
    await login(page, t.url, t.token);
  }, deadline(180_000));
  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await t?.close();
  });

  const nav = (name: string) => page.getByRole("navigation", { name: "Main" }).getByRole("link", { name });
  const settled = (id: string) =>
    waitFor(
      async () => {
        const x = await t.client.tasks.get(id);
        return ["succeeded", "failed", "dead", "cancelled", "timed_out"].includes(x.state) && x;
      },
      180_000,
      `task ${id} finished`,
    );
  /** The numbers of a row of the page's usage tables, as the API names them. */
  const rowNumbers = async (row: ReturnType<Page["getByTestId"]>) => ({
    calls: num(await row.getByTestId("calls").textContent()),
    refused: num(await row.getByTestId("refused").textContent()),
    inputTokens: num(await row.getByTestId("input").textContent()),
    outputTokens: num(await row.getByTestId("output").textContent()),
    cachedTokens: num(await row.getByTestId("cached").textContent()),
    costUsd: nano(Number(await row.getByTestId("cost").getAttribute("data-usd"))),
  });
  const numbersOf = (r: UsageRow) => ({
    calls: r.calls,
    refused: r.refused,
    inputTokens: r.inputTokens,
    outputTokens: r.outputTokens,
    cachedTokens: r.cachedTokens,
    costUsd: nano(r.costUsd),
  });

  it("a task submitted with a budget and warn mode runs; its page shows the budget and the mode", async () => {
    await scenarioOn(w, "task-budget", async () => {
      await nav("Tasks").click();
      await page.getByRole("button", { name: "New task" }).click();
      const form = page.getByRole("dialog", { name: "New task" });
      await form.waitFor();
      await form.getByLabel("Repository").fill(repoA);
      await form.getByLabel("Prompt").fill("spend some budget");
      // Without a budget there is no mode to choose.
      expect(await form.getByLabel("Past the budget").isDisabled()).toBe(true);
      await form.getByLabel("Budget (USD)").fill(String(BUDGET));
      await form.getByLabel("Past the budget").selectOption("warn");
      await form.getByRole("button", { name: "Submit task" }).click();
      await page.waitForURL(/\/t\/tsk_[^/]+$/);
      const id = page.url().split("/").at(-1)!;
      task = await t.client.tasks.get(id);
      expect([task.maxCostUsd, task.maxTokens, task.budgetMode]).toEqual([BUDGET, null, "warn"]);
      expect(await page.getByTestId("task-budget-mode").textContent()).toBe("warn");
      expect(await page.getByTestId("task-budget").textContent()).toContain("$5.00");

      // Another project's session, so that the usage has two projects to tell apart.
      const b = await t.client.sessions.create({ repo: repoB, prompt: "hello there" });
      sessionB = b.id;
      await collectUntil(t.client, b.id, untilTurnFinished(1), { timeoutMs: 180_000 });
      task = await settled(id);
      expect(task.state).toBe("succeeded");
    });
  });

  it("GET /usage, the client and `flotilla usage` filter by project, session and task", async () => {
    const all = await t.client.usage({ by: "project" });
    const a = all.items.find((r) => r.project === task.projectId);
    const b = all.items.find((r) => r.project !== task.projectId);
    expect(a?.calls).toBeGreaterThanOrEqual(2);
    expect(a?.costUsd).toBeGreaterThan(0);
    expect(b?.calls).toBeGreaterThanOrEqual(1);
    expect(a?.projectRepo).toBe(repoA);

    // Only A's rows, and they add up to A's row of the unfiltered report.
    const onlyA = await t.client.usage({ by: "project,model", project: task.projectId });
    expect(onlyA.items.length).toBeGreaterThan(0);
    expect(onlyA.items.every((r) => r.project === task.projectId)).toBe(true);
    expect(numbersOf(onlyA.total)).toEqual(numbersOf(a!));

    const bySession = await t.client.usage({ by: "session", session: sessionB });
    expect(bySession.items.map((r) => r.session)).toEqual([sessionB]);
    const byTask = await t.client.usage({ by: "task", task: task.id });
    expect(byTask.items.map((r) => r.task)).toEqual([task.id]);
    expect(byTask.total.costUsd).toBe(a!.costUsd);
    expect((await t.client.usage({ project: "prj_nothing" })).items).toEqual([]);

    const csv = (await t.client.usageCsv({ by: "project", project: task.projectId })).trim().split("\n");
    expect(csv).toHaveLength(2);
    expect(csv[1]!.split(",")[0]).toBe(task.projectId);

    // A bad filter gets the usual error, naming the field.
    const bad = await fetch(`${t.url}/usage?project=`, { headers: { authorization: `Bearer ${t.token}` } });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error).toMatchObject({ code: "invalid_request", field: "project" });

    const conn = ["--server", t.url, "--token", t.token];
    const cli = await runCli(["usage", "--by", "session", "--session", sessionB, "--csv", ...conn]);
    expect(cli.code, cli.stderr).toBe(0);
    const lines = cli.stdout.trim().split("\n");
    expect(lines.map((l) => l.split(",")[0])).toEqual(["session", sessionB]);
    const help = await runCli(["usage", "--help"]);
    expect(help.stdout).toMatch(/--project <id>/);
    expect(help.stdout).toMatch(/--task <id>/);
  });

  it("the usage page shows the API's numbers by project, then by day and model, with the same CSV; it follows new calls", async () => {
    await scenarioOn(w, "usage", async () => {
      await nav("Usage").click();
      await page.waitForURL(`${t.url}/u`);
      const rowA = page.locator(`[data-testid="usage-project"][data-project="${task.projectId}"]`);
      await rowA.waitFor();
      const api = await t.client.usage({ by: "project" });
      expect(await page.getByTestId("usage-project").count()).toBe(api.items.length);
      const a = api.items.find((r) => r.project === task.projectId)!;
      expect(await rowNumbers(rowA)).toEqual(numbersOf(a));
      expect(num(await rowA.getByTestId("cost").textContent())).toBeCloseTo(a.costUsd, 2);
      expect(await rowNumbers(page.getByTestId("usage-total").first())).toEqual(numbersOf(api.total));

      // The project's spend by day and model.
      await rowA.getByRole("button").click();
      await page.waitForURL(new RegExp(`/u\\?project=${task.projectId}$`));
      const detail = page.getByTestId("usage-day-model");
      await detail.first().waitFor();
      const byDay = await t.client.usage({ by: "day,model", project: task.projectId });
      expect(await detail.count()).toBe(byDay.items.length);
      for (const [i, r] of byDay.items.entries()) {
        const row = detail.nth(i);
        expect([await row.getAttribute("data-day"), await row.getAttribute("data-model")]).toEqual([
          r.day,
          r.model,
        ]);
        expect(await rowNumbers(row)).toEqual(numbersOf(r));
      }

      // The CSV link downloads, with the page's cookie, the rows the API returns.
      const href = await page.getByTestId("usage-csv").getAttribute("href");
      expect(href).toMatch(/^\/usage\?/);
      const res = await page.request.get(`${t.url}${href}`);
      expect(res.status()).toBe(200);
      expect(res.headers()["content-type"]).toMatch(/^text\/csv/);
      const downloaded = (await res.text()).trim().split("\n");
      expect(downloaded[0]).toBe("day,model,calls,refused,inputTokens,outputTokens,cachedTokens,costUsd");
      expect(downloaded.slice(1)).toEqual(
        byDay.items.map((r) =>
          [r.day, r.model, r.calls, r.refused, r.inputTokens, r.outputTokens, r.cachedTokens, r.costUsd].join(
            ",",
          ),
        ),
      );
      await shoot(page, "usage");

      // More calls in project A: the page shows them without a reload.
      const again = await t.client.sessions.create({ repo: repoA, prompt: "spend again" });
      await collectUntil(t.client, again.id, untilTurnFinished(1), { timeoutMs: 180_000 });
      const after = (await t.client.usage({ by: "project", project: task.projectId })).total;
      expect(after.calls).toBeGreaterThan(a.calls);
      await expect.poll(async () => rowNumbers(rowA), LIVE).toEqual(numbersOf(after));
      expect(w.problems).toEqual([]);
    });
  });

  it("the session page's meter shows the task's spend against its budget, and the session's own spend", async () => {
    await scenarioOn(w, "session-budget", async () => {
      await page.goto(`${t.url}/t/${task.id}`);
      await page.getByTestId("task-budget").getByRole("link", { name: "spent so far" }).click();
      await page.waitForURL(`${t.url}/s/${task.sessionId}`);
      const spent = (await t.client.usage({ by: "task", task: task.id })).total;
      const own = (await t.client.usage({ by: "session", session: task.sessionId! })).total;
      const meter = page.getByTestId("budget-usd");
      await meter.waitFor(LIVE);
      expect(Number(await meter.getAttribute("data-spent"))).toBe(spent.costUsd);
      expect(Number(await meter.getAttribute("data-limit"))).toBe(BUDGET);
      expect(num(await page.getByTestId("budget-usd-spent").textContent())).toBeCloseTo(spent.costUsd, 2);
      expect(num(await page.getByTestId("budget-usd-limit").textContent())).toBe(BUDGET);
      expect(await page.getByTestId("budget-mode").textContent()).toBe("warn");
      expect(Number(await page.getByTestId("session-spend").getAttribute("data-usd"))).toBe(own.costUsd);
      expect(await page.getByTestId("budget-tokens").count()).toBe(0);
      await shoot(page, "session-budget");

      // A session outside any task shows its spend, and no budget.
      await page.goto(`${t.url}/s/${sessionB}`);
      const b = (await t.client.usage({ by: "session", session: sessionB })).total;
      await page.getByTestId("session-spend").waitFor(LIVE);
      expect(Number(await page.getByTestId("session-spend").getAttribute("data-usd"))).toBe(b.costUsd);
      expect(await page.getByTestId("budget-usd").count()).toBe(0);
      expect(w.problems).toEqual([]);
    });
  });

  it("a task past its budget in warn mode goes on, and its conversation shows the warning naming the budget", async () => {
    await scenarioOn(w, "budget-warning", async () => {
      // A one-token budget: its first call already crosses it.
      const { task: over } = await t.client.tasks.submit({
        repo: repoA,
        prompt: "spend again",
        maxTokens: 1,
        budgetMode: "warn",
      });
      const done = await settled(over.id);
      expect(done.state).toBe("succeeded");
      await page.goto(`${t.url}/s/${done.sessionId}`);
      const line = page.getByTestId("budget-warning");
      await line.waitFor(LIVE);
      expect(await line.count()).toBe(1);
      const text = await line.textContent();
      expect(text).toContain("Task token budget");
      expect(text).toContain("maxTokens");
      await shoot(page, "budget-warning");
      expect(w.problems).toEqual([]);
    });
  });

  it("secrets: one added in the page is in the API's list and its value nowhere; one set by the API shows up; delete removes it", async () => {
    await scenarioOn(w, "secrets", async () => {
      const value = `ui-canary-${randomBytes(12).toString("hex")}`;
      await nav("Settings").click();
      await page.getByRole("navigation", { name: "Settings" }).getByRole("link", { name: "Secrets" }).click();
      await page.waitForURL(`${t.url}/settings/secrets`);
      const form = page.getByRole("form", { name: "Add a secret" });
      await form.getByLabel("Name").fill("UI_DEPLOY_KEY");
      await form.getByLabel("Value").fill(value);
      expect(await form.getByLabel("Value").getAttribute("type")).toBe("password");
      await form.getByLabel("Project id").fill(task.projectId);
      await form.getByRole("button", { name: "Save secret" }).click();
      await form.getByRole("status").getByText("UI_DEPLOY_KEY").waitFor();
      const row = page.locator('[data-testid="secret-row"][data-name="UI_DEPLOY_KEY"]');
      await row.waitFor();
      expect(await row.textContent()).toContain(task.projectId);

      const list = await t.client.secrets.list();
      const mine = list.find((s) => s.name === "UI_DEPLOY_KEY");
      expect(mine).toMatchObject({ scope: "project", projectId: task.projectId });
      const raw = await fetch(`${t.url}/secrets`, { headers: { authorization: `Bearer ${t.token}` } });
      expect(await raw.text()).not.toContain(value);
      expect(await page.content()).not.toContain(value);
      expect(await form.getByLabel("Value").inputValue()).toBe("");

      // Set through the API: it appears in the open page by itself, as an organisation secret.
      const apiValue = `api-canary-${randomBytes(12).toString("hex")}`;
      await t.client.secrets.set({ name: "API_SET_TOKEN", value: apiValue });
      const apiRow = page.locator('[data-testid="secret-row"][data-name="API_SET_TOKEN"]');
      await apiRow.waitFor(LIVE);
      expect(await apiRow.textContent()).toMatch(/org/);
      expect(await page.content()).not.toContain(apiValue);
      await shoot(page, "secrets");

      // Deleting asks first; keeping keeps it.
      await row.getByRole("button", { name: "Delete" }).click();
      const confirm = page.getByRole("alertdialog", { name: "Delete UI_DEPLOY_KEY" });
      await confirm.getByRole("button", { name: "Keep" }).click();
      await confirm.waitFor({ state: "detached" });
      expect((await t.client.secrets.list()).some((s) => s.name === "UI_DEPLOY_KEY")).toBe(true);
      await row.getByRole("button", { name: "Delete" }).click();
      await confirm.getByRole("button", { name: "Delete secret" }).click();
      await row.waitFor({ state: "detached" });
      expect((await t.client.secrets.list()).map((s) => s.name)).toEqual(["API_SET_TOKEN"]);
      expect(w.problems).toEqual([]);
    });
  });

  it("secrets: a member is told that only admins manage them", async () => {
    const { token } = await t.client.tokens.create("usage member", "member");
    const memberContext = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    try {
      const m = await watchedPage(memberContext);
      await scenarioOn(m, "secrets-member", async () => {
        await login(m.page, t.url, token);
        await m.page.goto(`${t.url}/settings/secrets`);
        await m.page.getByTestId("secrets-forbidden").waitFor(LIVE);
        expect(await m.page.getByRole("form", { name: "Add a secret" }).count()).toBe(0);
        await expect(new FlotillaClient({ baseUrl: t.url, token }).secrets.list()).rejects.toMatchObject({
          status: 403,
        });
        // The 403 is the answer the page shows; the browser logs the failed request, nothing else.
        expect(m.problems.filter((p) => !p.includes("status of 403"))).toEqual([]);
      });
    } finally {
      await memberContext.close();
    }
  });
});
