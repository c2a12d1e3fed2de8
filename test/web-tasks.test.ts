import { createHmac } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scenario } from "../packages/server/test/scenario.ts";
import {
  type Browser,
  haveChromium,
  launchBrowser,
  login,
  type Page,
  scenarioOn,
  shoot,
  watchedPage,
} from "./browser.ts";
import { makeRepo, startTestServer, type TestServer } from "./support.ts";

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

/** A webhook receiver on loopback that answers 200 and remembers what it was sent. */
async function startReceiver(): Promise<{ server: Server; url: string; received: Received[] }> {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      res.writeHead(200, { "content-type": "text/plain" }).end("ok");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}/hook`, received };
}

const taskState = (page: Page) => page.getByTestId("task-state").textContent();

async function goTasks(page: Page) {
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Tasks" }).click();
  await page.getByRole("heading", { name: "Tasks", exact: true }).waitFor();
}

/** The new-task form is a dialog, closed until the page's button opens it. */
async function newTask(page: Page) {
  const dialog = page.getByRole("dialog", { name: "New task" });
  expect(await dialog.count()).toBe(0);
  await page.getByRole("button", { name: "New task" }).click();
  await dialog.waitFor();
  return dialog;
}

describe.skipIf(!haveChromium)("tasks and webhooks pages in a real browser", () => {
  let t: TestServer;
  let browser: Browser;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  beforeAll(async () => {
    t = await startTestServer({ scenario, config: { permission: "ask" } });
    receiver = await startReceiver();
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await new Promise((r) => (receiver ? receiver.server.close(r) : r(undefined)));
    await t?.close();
  });

  it("submits tasks from the form, follows one to its session, cancels and retries another live", async () => {
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    const w = await watchedPage(context);
    const { page } = w;
    await scenarioOn(w, "tasks", async () => {
      await login(page, t.url, t.token);
      await goTasks(page);
      const repo = makeRepo();
      let form = await newTask(page);

      // The API's field error is shown on the field it names, not as a loose banner.
      await form.getByLabel("Repository").fill("/nowhere/at/all");
      await form.getByLabel("Prompt").fill("write hello please");
      await form.getByRole("button", { name: "Submit task" }).click();
      await form.getByText("no directory at /nowhere/at/all").waitFor();
      expect(await form.getByLabel("Repository").getAttribute("aria-invalid")).toBe("true");
      expect(await page.getByRole("alert").count()).toBe(0);
      // Chromium logs every failed fetch to the console: this 422 was asked for, nothing else may be there.
      await expect
        .poll(() => w.problems)
        .toEqual([
          "console: Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)",
        ]);
      w.problems.length = 0;

      await form.getByLabel("Repository").fill(repo);
      await form.getByLabel("Permissions").selectOption("ask");
      await form.getByLabel("Priority").fill("5");
      await form.getByLabel("Labels").fill("suite=web, kind=demo");
      await shoot(page, "task-new");
      await form.getByRole("button", { name: "Submit task" }).click();
      // Submitted: straight to the new task's own page.
      await page.waitForURL(/\/t\/tsk_[^/]+$/);
      const helloTaskUrl = page.url();
      await page.getByRole("heading", { name: "write hello please" }).waitFor();
      expect(await page.getByRole("dialog").count()).toBe(0);

      await goTasks(page);
      const tasks = page.getByRole("list", { name: "Tasks" });
      const helloRow = tasks.getByRole("link").filter({ hasText: "write hello please" });
      await helloRow.waitFor();
      expect(await helloRow.textContent()).toContain("priority +5");

      // Filters go to the API: a label that matches keeps the row, one that does not empties the list.
      await page.getByLabel("Label", { exact: true }).fill("suite=web");
      await helloRow.waitFor();
      await page.getByLabel("Label", { exact: true }).fill("suite=nothing");
      await page.getByText("No task matches these filters.").waitFor();
      await page.getByLabel("Label", { exact: true }).fill("");
      await page.getByLabel("State", { exact: true }).selectOption("succeeded");
      await page.getByText("No task matches these filters.").waitFor();
      await page.getByLabel("State", { exact: true }).selectOption("");
      await helloRow.waitFor();
      await shoot(page, "tasks");

      await helloRow.click();
      await page.waitForURL(helloTaskUrl);
      await page.getByRole("heading", { name: "write hello please" }).waitFor();
      // The attempt's session link appears without a reload once the scheduler has made it.
      const attempt1 = page.getByRole("listitem", { name: "Attempt 1" });
      await attempt1.getByRole("link", { name: "Open session" }).click({ timeout: 60_000 });
      await page.waitForURL(/\/s\/ses_[^/]+$/);

      const ask = page.getByRole("alertdialog", { name: "Permission request" });
      await ask.waitFor({ timeout: 60_000 });
      await ask.getByRole("button", { name: "Allow once" }).click();
      await page.getByText("I wrote hello.txt for you.").waitFor({ timeout: 60_000 });
      await page.getByRole("link", { name: "Changes" }).click();
      await page.getByTestId("split-diff").getByText("hello from the agent").waitFor();

      // Back on the task page: it finished while we were away, with the agent's answer as its result.
      await page.goto(helloTaskUrl);
      await expect.poll(() => taskState(page), { timeout: 60_000 }).toBe("succeeded");
      await page.getByTestId("task-summary").getByText("I wrote hello.txt for you.").waitFor();
      expect(await page.getByRole("button", { name: "Cancel" }).count()).toBe(0);
      expect(await page.getByRole("button", { name: "Retry" }).count()).toBe(0);
      const history = page.getByRole("list", { name: "Transitions" });
      expect(await history.textContent()).toContain("submitted");
      expect(await page.getByRole("list", { name: "Attempts" }).textContent()).toContain("succeeded");
      await shoot(page, "task");

      // A task that hangs: cancel it from its page while it runs, then retry it, all without a reload.
      await goTasks(page);
      form = await newTask(page);
      // The last repository is remembered: the prompt is what is left to write, and has the focus.
      expect(await form.getByLabel("Repository").inputValue()).toBe(repo);
      await page.keyboard.type("hang please");
      await form.getByRole("button", { name: "Submit task" }).click();
      await page.waitForURL((u) => /\/t\/tsk_[^/]+$/.test(u.pathname) && u.href !== helloTaskUrl);
      const hangId = page.url().split("/").at(-1)!;
      await page.evaluate(() => {
        (window as unknown as { notReloaded: boolean }).notReloaded = true;
      });
      await expect.poll(() => taskState(page), { timeout: 60_000 }).toBe("running");
      // Its session is attached after the task went running (no task transition says so): the link
      // still appears on this open page.
      await page
        .getByRole("listitem", { name: "Attempt 1" })
        .getByRole("link", { name: "Open session" })
        .waitFor({ timeout: 60_000 });
      await page.getByRole("button", { name: "Cancel" }).click();
      await expect.poll(() => taskState(page), { timeout: 60_000 }).toBe("cancelled");
      expect(await page.getByRole("list", { name: "Transitions" }).textContent()).toContain(
        "cancelled by request",
      );
      await page.getByRole("button", { name: "Retry" }).click();
      await expect.poll(() => taskState(page)).toMatch(/^(queued|running)$/);
      await page.getByRole("listitem", { name: "Attempt 2" }).waitFor({ timeout: 60_000 });
      await expect.poll(() => taskState(page), { timeout: 60_000 }).toBe("running");
      expect(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded)).toBe(
        true,
      );
      expect(await page.getByRole("list", { name: "Transitions" }).textContent()).toContain(
        "retried by request",
      );
      expect(w.problems).toEqual([]);
      // Frees its harness, and ends its transitions before the next test subscribes a webhook.
      await t.client.tasks.cancel(hangId);
      await expect
        .poll(async () => (await t.client.tasks.get(hangId)).state, { timeout: 60_000 })
        .toBe("cancelled");
    });
    await context.close();
  });

  it("creates a webhook, shows its secret once, logs its deliveries and deletes it", async () => {
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    const w = await watchedPage(context);
    const { page } = w;
    await scenarioOn(w, "webhooks", async () => {
      await login(page, t.url, t.token);
      await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Webhooks" }).click();
      await page.getByLabel("URL", { exact: true }).fill(receiver.url);
      await page.getByRole("checkbox", { name: /session\.status/ }).uncheck();
      await page.getByRole("button", { name: "Create webhook" }).click();
      const secretBox = page.getByRole("region", { name: "Signing secret" });
      const secret = (await secretBox.getByTestId("webhook-secret").textContent())!;
      expect(secret).toMatch(/^whsec_/);
      const row = page.getByRole("list", { name: "Webhooks" }).getByRole("listitem", { name: receiver.url });
      await row.waitFor();
      expect(await row.textContent()).toContain("task.*");
      expect(await row.textContent()).not.toContain("session.status");
      await shoot(page, "webhooks");
      await secretBox.getByRole("button", { name: "I have stored it" }).click();
      await secretBox.waitFor({ state: "detached" });
      expect(await page.getByText(secret).count()).toBe(0);

      await row.getByRole("link", { name: "Deliveries" }).click();
      await page.waitForURL(/\/hooks\/whk_[^/]+$/);
      await page.getByText("No deliveries yet").waitFor();

      const { task } = await t.client.tasks.submit({ repo: makeRepo(), prompt: "say hello" });
      await expect
        .poll(() => receiver.received.map((r) => JSON.parse(r.body).event), { timeout: 60_000 })
        .toContain("task.succeeded");
      // Signed with the secret the page showed once.
      for (const r of receiver.received) {
        const ts = String(r.headers["x-flotilla-timestamp"]);
        const mac = createHmac("sha256", secret).update(`${ts}.${r.body}`).digest("hex");
        expect(r.headers["x-flotilla-signature"]).toBe(`sha256=${mac}`);
      }

      await page.getByRole("button", { name: "Refresh" }).click();
      const deliveries = page.getByRole("list", { name: "Deliveries" }).getByTestId("delivery");
      await expect.poll(() => deliveries.count(), { timeout: 30_000 }).toBeGreaterThanOrEqual(3);
      // Newest first: the last transition heads the log.
      await expect
        .poll(() => deliveries.first().textContent(), { timeout: 30_000 })
        .toContain("task.succeeded");
      expect(await deliveries.last().textContent()).toContain("task.queued");
      await expect
        .poll(() => page.getByTestId("delivery-status").allTextContents(), { timeout: 30_000 })
        .toContain("delivered");
      await deliveries.first().locator("summary").click();
      expect(await deliveries.first().locator("table").textContent()).toContain("200");
      await shoot(page, "webhook-deliveries");

      // The task's own page lists what was delivered about it.
      await page.goto(`${t.url}/t/${task.id}`);
      await page
        .getByRole("region", { name: "Webhook deliveries" })
        .getByTestId("delivery")
        .first()
        .waitFor();

      await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Webhooks" }).click();
      const listed = page
        .getByRole("list", { name: "Webhooks" })
        .getByRole("listitem", { name: receiver.url });
      await listed.getByRole("button", { name: "Delete" }).click();
      const confirm = page.getByRole("alertdialog", { name: "Delete webhook" });
      await confirm.getByRole("button", { name: "Yes, delete" }).click();
      await page.getByText("No webhooks yet").waitFor();
      expect(await t.client.webhooks.list()).toEqual([]);
      expect(w.problems).toEqual([]);
    });
    await context.close();
  });
});
