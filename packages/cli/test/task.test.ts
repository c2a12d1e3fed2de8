import type { Task } from "@flotilla/contracts";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { makeRepo, startTestServer, type TestServer, waitFor } from "../../../test/support.ts";
import { scenario } from "../../server/test/scenario.ts";
import { killChildren, runCli, spawnCli, until } from "./cli.ts";

// One slot: tasks run one at a time, so a hanging task keeps the next one queued for as long as
// the test needs it there.
let t: TestServer;
let conn: string[];
let repo: string;
beforeAll(async () => {
  t = await startTestServer({ scenario, scheduler: { maxConcurrent: 1 } });
  conn = ["--server", t.url, "--token", t.token];
  // One repository (one project) for the file: its tasks can share a pooled harness.
  repo = makeRepo();
});
afterEach(() => killChildren());
afterAll(async () => {
  killChildren();
  await t?.close();
});

const FINAL = ["succeeded", "failed", "cancelled", "timed_out", "dead"];
const taskIdIn = (text: string) => /\btsk_[0-9a-z]+/.exec(text)?.[0];
// A --wait run follows a whole session (harness start included): allow for a loaded machine.
const WAIT = { timeoutMs: 240_000 };

async function settled(id: string): Promise<Task> {
  return waitFor(
    async () => {
      const task = await t.client.tasks.get(id);
      return FINAL.includes(task.state) ? task : undefined;
    },
    180_000,
    `task ${id} to finish`,
  );
}

describe("task submit --wait, ls, show", () => {
  let id: string;

  it("follows the task's session live and prints the result: state, attempts, the file, usage; exit 0", async () => {
    const r = await runCli(["task", "submit", "write hello please", "--repo", repo, "--wait", ...conn], WAIT);
    expect(r.stderr).toBe("");
    expect(r.code, r.stdout).toBe(0);
    id = taskIdIn(r.stdout)!;
    expect(r.stdout).toMatch(new RegExp(`^${id}  \\S+ · scripted/scripted-1\\n`));
    // The lifecycle as notes, then the agent's turn rendered as `run` renders it.
    expect(r.stdout).toContain("· queued: submitted");
    expect(r.stdout).toMatch(/· running: attempt 1 on \S+/);
    expect(r.stdout).toMatch(/· attempt 1: session ses_\w+/);
    expect(r.stdout).toMatch(/✓ write hello\.txt/);
    expect(r.stdout).toContain("I wrote hello.txt for you.");
    // The summary.
    expect(r.stdout).toMatch(/✓ succeeded · 1 attempt of 3 · ran \d[\d.]*m?s · \S+ since submitted/);
    expect(r.stdout).toMatch(/hello\.txt\s+\+1 −0/);
    expect(r.stdout).toMatch(/1 file changed\s+\+1 −0/);
    expect(r.stdout).toMatch(/tokens [\d,]+ in · [\d,]+ out · cost \$/);
    expect(r.stdout).toContain(`flotilla task show ${id}`);
    expect(r.stdout).not.toContain("\x1b[");
    const task = await t.client.tasks.get(id);
    expect(task).toMatchObject({ state: "succeeded", attempts: 1 });
  });

  it("a failing --verify fails the task: exit 1, the verify exit code and its output's tail", async () => {
    const r = await runCli(
      [
        "task",
        "submit",
        "say hi",
        "--repo",
        repo,
        "--verify",
        "echo checking >&2; exit 3",
        "--wait",
        ...conn,
      ],
      WAIT,
    );
    expect(r.code, r.stdout).toBe(1);
    expect(r.stdout).toContain("Hello from the scripted model.");
    expect(r.stdout).toMatch(/✗ failed · 1 attempt of 3/);
    expect(r.stdout).toContain("VerifyFailed: verify command exited 3");
    expect(r.stdout).toContain("verify echo checking >&2; exit 3 exited 3");
    expect(r.stdout).toContain("│ checking");
    expect(r.stdout).toContain("no files changed");
  });

  it("ls lists tasks as a table and, filtered by state, as JSON", async () => {
    const table = await runCli(["task", "ls", ...conn]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^ID\s+STATE\s+PRI\s+ATTEMPTS\s+AGE\s+PROMPT/);
    expect(table.stdout).toMatch(
      new RegExp(`${id}\\s+succeeded\\s+0\\s+1/3\\s+\\d+[smh]\\s+write hello please`),
    );
    expect(table.stdout).toMatch(/tsk_\w+\s+failed\s+0\s+1\/3\s+\S+\s+say hi/);

    const json = await runCli(["task", "ls", "--state", "succeeded", "--json", ...conn]);
    expect(json.code).toBe(0);
    const page = JSON.parse(json.stdout) as { items: Task[] };
    expect(page.items.map((x) => x.id)).toEqual([id]);
    const none = await runCli(["task", "ls", "--state", "dead", ...conn]);
    expect(none.stdout.trim()).toBe("no dead tasks");
  });

  it("show prints the details, the result, the attempt with its session, and the state history", async () => {
    const r = await runCli(["task", "show", id, ...conn]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${id}\\s+succeeded`));
    expect(r.stdout).toMatch(/prompt\s+write hello please/);
    expect(r.stdout).toMatch(/timeout\s+1h 00m/);
    expect(r.stdout).toMatch(/hello\.txt\s+\+1 −0/);
    expect(r.stdout).toContain("I wrote hello.txt for you.");
    expect(r.stdout).toMatch(/#1\s+ses_\w+\s+succeeded\s+\S+\s+on \S+/);
    expect(r.stdout).toMatch(/history\n\s+AT\s+STATE\s+WHY\n/);
    expect(r.stdout).toMatch(/\+\S+\s+→ queued\s+submitted/);
    expect(r.stdout).toMatch(/\+\S+\s+queued → running\s+attempt 1 on \S+/);
    expect(r.stdout).toMatch(/\+\S+\s+running → succeeded\n/);

    const json = JSON.parse((await runCli(["task", "show", id, "--json", ...conn])).stdout) as Task;
    expect(json.history!.map((h) => h.to)).toEqual(["queued", "running", "succeeded"]);
    expect(json.attemptList).toHaveLength(1);
  });

  it("an unknown task: exit 1 and the server's not_found", async () => {
    const r = await runCli(["task", "show", "tsk_doesnotexist", ...conn]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error not_found: no task tsk_doesnotexist \(field: id\)/);
  });
});

describe("idempotency, options, cancel, retry", () => {
  it("the same --key twice: one task; the second submit says `already submitted` with the same id", async () => {
    const args = ["task", "submit", "say hi", "--repo", repo, "--key", `k-${Date.now()}`];
    const opts = ["--priority", "-5", "--timeout", "90s", "--max-attempts", "2", "--label", "team=cli"];
    // Budgets far above what "say hi" spends: the task still succeeds.
    opts.push("--max-cost", "$5", "--max-tokens", "10000000");
    const first = await runCli([...args, ...opts, "--label", "run=1", ...conn]);
    expect(first.code, first.stderr).toBe(0);
    const id = first.stdout.trim();
    expect(id).toMatch(/^tsk_\w+$/);
    expect(first.stderr).not.toContain("already submitted");

    const again = await runCli([...args, ...conn]);
    expect(again.code).toBe(0);
    expect(again.stdout.trim()).toBe(id);
    expect(again.stderr).toMatch(/^already submitted \(idempotency key k-\d+\): the task is \w+/);

    // The flags reached the task as the API's fields.
    const task = await t.client.tasks.get(id);
    expect(task).toMatchObject({
      priority: -5,
      timeoutMs: 90_000,
      maxAttempts: 2,
      maxCostUsd: 5,
      maxTokens: 10_000_000,
      labels: { team: "cli", run: "1" },
    });
    expect((await runCli(["task", "show", id, ...conn])).stdout).toMatch(/budget +\$5, 10000000 tokens/);
    const bad = await runCli(["task", "submit", "say hi", "--repo", repo, "--max-cost", "-1", ...conn]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--max-cost.*expected a positive amount in USD/);
    const labelled = JSON.parse(
      (await runCli(["task", "ls", "--label", "team=cli", "--json", ...conn])).stdout,
    );
    expect(labelled.items.map((x: Task) => x.id)).toEqual([id]);
    expect((await settled(id)).state).toBe("succeeded");
  });

  it("cancel of a queued task (the slot busy with a hanging one) prints cancelled; retry queues it again", async () => {
    const hang = (
      await runCli(["task", "submit", "hang until cancelled", "--repo", repo, ...conn])
    ).stdout.trim();
    await waitFor(
      async () => {
        const x = await t.client.tasks.get(hang);
        return x.state === "running" && x.attemptList?.[0]?.sessionId;
      },
      180_000,
      "the hanging task to hold the slot",
    );
    const queued = (await runCli(["task", "submit", "say hi", "--repo", repo, ...conn])).stdout.trim();
    expect((await t.client.tasks.get(queued)).state).toBe("queued");

    const r = await runCli(["task", "cancel", queued, ...conn]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(`■ cancelled ${queued}`);
    expect(await t.client.tasks.get(queued)).toMatchObject({ state: "cancelled", attempts: 0 });
    const again = await runCli(["task", "cancel", queued, ...conn]);
    expect(again.stdout.trim()).toBe(`■ cancelled ${queued}`);

    // A running task is cancelled by aborting its session: the command says so, the task follows.
    const running = await runCli(["task", "cancel", hang, ...conn]);
    expect(running.stdout).toContain(`■ cancelling ${hang}: its session is being aborted`);
    expect((await settled(hang)).state).toBe("cancelled");
    const shown = await runCli(["task", "show", hang, ...conn]);
    expect(shown.stdout).toMatch(/running → cancelled\s+cancelled by request/);

    const retried = await runCli(["task", "retry", queued, ...conn]);
    expect(retried.code, retried.stderr).toBe(0);
    expect(retried.stdout.trim()).toBe(`queued ${queued} again: 3 more attempts (0 so far)`);
    expect((await settled(queued)).state).toBe("succeeded");
    // Only a failed, cancelled, timed out or dead task can be retried: the server's conflict, as it said it.
    const refused = await runCli(["task", "retry", queued, ...conn]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /^error conflict: task tsk_\w+ is succeeded; only a failed, cancelled, timed-out or dead task can be retried/,
    );
  });
});

describe("Ctrl-C during --wait", () => {
  it("stops waiting and leaves the task running (it is queued work, not this terminal's turn); exit 130", async () => {
    const run = spawnCli(["task", "submit", "hang until detached", "--repo", repo, "--wait", ...conn]);
    await until(
      "streamed text from the hanging turn",
      () => run.stdout().includes("Working on it"),
      180_000,
      () => run.output(),
    );
    const id = taskIdIn(run.stdout())!;
    run.child.kill("SIGINT");
    const { code } = await run.exited;
    expect(code, run.output()).toBe(130);
    expect(run.stderr()).toContain(`stopped waiting; ${id} carries on. Follow it: flotilla task show ${id}`);
    const task = await t.client.tasks.get(id);
    expect(task.state).toBe("running");
    const { items } = await t.client.sessions.events(task.sessionId!);
    expect(items.some((e) => e.type === "turn.finished")).toBe(false);

    const cancel = await runCli(["task", "cancel", id, ...conn]);
    expect(cancel.stdout).toContain(`cancelling ${id}`);
    expect((await settled(id)).state).toBe("cancelled");
  });
});

describe("run --queue", () => {
  it("submits the prompt as a task and waits for it like task submit --wait", async () => {
    const r = await runCli(["run", "edit readme now", "--queue", "--repo", repo, ...conn], WAIT);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const id = taskIdIn(r.stdout)!;
    expect(r.stdout).toContain("README edited.");
    expect(r.stdout).toMatch(/✓ succeeded · 1 attempt of 3/);
    expect(r.stdout).toMatch(/README\.md\s+\+1 −1/);
    expect((await t.client.tasks.get(id)).state).toBe("succeeded");

    const title = await runCli(["run", "hi", "--queue", "--title", "x", "--repo", repo, ...conn]);
    expect(title.code).toBe(1);
    expect(title.stderr).toMatch(/--title does not apply to --queue/);
  });
});
