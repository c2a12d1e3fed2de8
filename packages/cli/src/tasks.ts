import { type CreateTaskBody, type PermissionPolicy, TaskState } from "@flotilla/contracts";
import { type Command, Option } from "commander";
import { collectLabel, durationMs, intIn, labelFilter, repoArg, usd } from "./args.ts";
import { action, connect } from "./connection.ts";
import { plural } from "./format.ts";
import { positiveInt } from "./sessions.ts";
import { styleFor } from "./style.ts";
import { showLines, taskStateColor, tasksTable } from "./task-view.ts";
import { submitTask } from "./task-wait.ts";
import { deliveriesTable } from "./webhooks.ts";

interface SubmitOptions {
  repo?: string;
  base?: string;
  model?: string;
  agent?: string;
  permission?: PermissionPolicy;
  priority?: number;
  timeout?: number;
  maxAttempts?: number;
  maxCost?: number;
  maxTokens?: number;
  budgetMode?: "hard" | "warn";
  label?: Record<string, string>;
  key?: string;
  verify?: string;
  webhook?: string;
  commit?: boolean;
  pr?: boolean;
  prBase?: string;
  ready?: boolean;
  wait?: boolean;
  yes?: boolean;
  json?: boolean;
}

const print = (text: string) => process.stdout.write(`${text}\n`);
const printJson = (v: unknown) => print(JSON.stringify(v, null, 2));

const SUBMIT_HELP = `
Without --wait the task id is printed on stdout (and "already submitted" on stderr when --key matched
an earlier task). With --wait each attempt's session is followed live, then the result is printed:
state, attempts, changed files, tokens and cost, the verify command's exit code with the tail of its
output, and with --commit or --pr the commit and the pull request's url. Ctrl-C stops waiting; the
task carries on (\`flotilla task cancel <id>\` stops it).
With --json: { task, created } as JSON (with --wait, once the task is final).
Exit code: 0 submitted (with --wait: the task succeeded), 1 refused (a full queue says when to retry)
or, with --wait, any other final state; 130 after Ctrl-C.`;

/** The task body from the flags `task submit` and `run --queue` share. */
export function taskBody(prompt: string, f: SubmitOptions): CreateTaskBody {
  return {
    repo: repoArg(f.repo),
    prompt,
    ...(f.base ? { baseRef: f.base } : {}),
    ...(f.model ? { model: f.model } : {}),
    ...(f.agent ? { agent: f.agent } : {}),
    ...(f.permission ? { permission: f.permission } : {}),
    ...(f.priority !== undefined ? { priority: f.priority } : {}),
    ...(f.timeout !== undefined ? { timeoutMs: f.timeout } : {}),
    ...(f.maxAttempts !== undefined ? { maxAttempts: f.maxAttempts } : {}),
    ...(f.maxCost !== undefined ? { maxCostUsd: f.maxCost } : {}),
    ...(f.maxTokens !== undefined ? { maxTokens: f.maxTokens } : {}),
    ...(f.budgetMode ? { budgetMode: f.budgetMode } : {}),
    ...(f.label ? { labels: f.label } : {}),
    ...(f.key ? { idempotencyKey: f.key } : {}),
    ...(f.verify ? { verify: f.verify } : {}),
    ...(f.webhook ? { webhook: f.webhook } : {}),
    ...(f.commit ? { commit: true } : {}),
    ...(f.pr ? { pr: { draft: !f.ready, ...(f.prBase ? { base: f.prBase } : {}) } } : {}),
  };
}

export function registerTasks(program: Command): void {
  const task = program.command("task").description("Queued work: submit tasks, follow them, retry, cancel");

  task
    .command("submit")
    .description("Queue a prompt as a task; it runs as a session when a slot is free")
    .argument("<prompt>", "what the agent should do")
    .option("--repo <path|url>", "git repository: a local path or a git URL (default: current directory)")
    .option("--base <ref>", "ref to branch from (default HEAD)")
    .option("--model <provider/model>", "model, e.g. anthropic/claude-sonnet-4-5")
    .option("--agent <name>", "OpenCode agent")
    .addOption(
      new Option("--permission <policy>", "what the agent may do unasked (default allow)").choices([
        "ask",
        "allow",
        "read-only",
      ]),
    )
    .option("--priority <n>", "-100 to 100; higher runs first (default 0)", intIn(-100, 100))
    .option("--timeout <duration>", "per attempt: 90s, 30m, 1h or milliseconds (default 1h)", durationMs)
    .option("--max-attempts <n>", "attempts before the task is dead (1-20, default 3)", intIn(1, 20))
    .option("--max-cost <usd>", "budget over every attempt: model calls past it are refused", usd)
    .option("--max-tokens <n>", "budget of model tokens (input + output) over every attempt", intIn(1, 1e9))
    .addOption(
      new Option(
        "--budget-mode <mode>",
        "hard (default): refuse calls past the budget; warn: let them through with a budget.warning event and webhook",
      ).choices(["hard", "warn"]),
    )
    .option("--label <key=value>", "a label (repeat for more)", collectLabel)
    .option("--key <idempotency-key>", "submitting the same key again returns the first task")
    .option("--verify <command>", "shell command run in the workspace after the turn; exit 0 = success")
    .option("--webhook <url>", "POST the task's state changes here (signed: see `flotilla webhook secret`)")
    .option("--commit", "on success, commit the agent's changes on the session's branch")
    .option("--pr", "on success, push the session's branch and open a pull request (a draft unless --ready)")
    .addOption(
      new Option(
        "--pr-base <branch>",
        "the pull request's base branch (default: --base if a branch, else the repository's default; implies --pr)",
      ).implies({
        pr: true,
      }),
    )
    .addOption(
      new Option("--ready", "open the pull request ready for review (implies --pr)").implies({ pr: true }),
    )
    .option("--wait", "follow the task until it ends and print the result")
    .option("-y, --yes", "with --wait and --permission ask: allow every ask once")
    .option("--json", "print { task, created } as JSON")
    .addHelpText("after", SUBMIT_HELP)
    .action(
      action(async (prompt: string, flags: SubmitOptions, cmd: Command) =>
        submitTask(connect(cmd), taskBody(prompt, flags), flags),
      ),
    );

  task
    .command("ls")
    .description("List tasks, newest first")
    .addOption(new Option("--state <state>", "only tasks in this state").choices(TaskState.options))
    .option("--label <key=value>", "only tasks with this label", labelFilter)
    .option("--limit <n>", "how many (1-200)", positiveInt, 50)
    .option("--json", "print the page as JSON")
    .action(
      action(
        async (flags: { state?: TaskState; label?: string; limit: number; json?: boolean }, cmd: Command) => {
          const { client } = connect(cmd);
          const page = await client.tasks.list({
            state: flags.state,
            label: flags.label,
            limit: flags.limit,
          });
          if (flags.json) return void printJson(page);
          const s = styleFor(process.stdout);
          if (!page.items.length)
            return void print(s.dim(flags.state ? `no ${flags.state} tasks` : "no tasks"));
          print(tasksTable(page.items, s, process.stdout.columns));
          if (page.nextCursor) print(s.dim(`… more; raise --limit (showing ${page.items.length})`));
          return 0;
        },
      ),
    );

  task
    .command("show")
    .description("A task's details, result, attempts (with their sessions) and state history")
    .argument("<id>", "task id (tsk_…)")
    .option("--json", "print the task as JSON")
    .action(
      action(async (id: string, flags: { json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const t = await client.tasks.get(id);
        if (flags.json) return void printJson(t);
        const diff =
          t.sessionId && t.result?.files
            ? await client.sessions.diff(t.sessionId).catch(() => undefined)
            : undefined;
        print(showLines(t, styleFor(process.stdout), diff, process.stdout.columns).join("\n"));
        return 0;
      }),
    );

  task
    .command("cancel")
    .description("Cancel a task: a queued one at once, a running one by aborting its session")
    .argument("<id>", "task id")
    .option("--json", "print the task as JSON")
    .action(
      action(async (id: string, flags: { json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const t = await client.tasks.cancel(id);
        if (flags.json) return void printJson(t);
        const s = styleFor(process.stdout);
        if (t.state === "cancelled") print(`${s.yellow("■")} cancelled ${id}`);
        else if (t.state === "running")
          print(`${s.yellow("■")} cancelling ${id}: its session is being aborted (flotilla task show ${id})`);
        else print(`nothing to cancel: ${id} is ${taskStateColor(t.state, s)}`);
        return 0;
      }),
    );

  task
    .command("retry")
    .description("Queue a finished (failed, cancelled, timed out, dead) task again with fresh attempts")
    .argument("<id>", "task id")
    .option("--json", "print the task as JSON")
    .action(
      action(async (id: string, flags: { json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        // The budget is counted from the attempts before the retry: a free slot may claim the task
        // before the answer comes back, so the answer's own count can already include the next one.
        const before = await client.tasks.get(id);
        const t = await client.tasks.retry(id);
        if (flags.json) return void printJson(t);
        print(
          `queued ${id} again: ${plural(t.maxAttempts - before.attempts, "more attempt")} (${before.attempts} so far)`,
        );
        return 0;
      }),
    );

  task
    .command("deliveries")
    .description("Webhook deliveries of a task's events (its own --webhook URL and subscriptions)")
    .argument("<id>", "task id")
    .option("--limit <n>", "how many (1-200)", positiveInt, 50)
    .option("--json", "print the page as JSON")
    .action(
      action(async (id: string, flags: { limit: number; json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const page = await client.webhooks.taskDeliveries(id, { limit: flags.limit });
        if (flags.json) return void printJson(page);
        const s = styleFor(process.stdout);
        if (!page.items.length) return void print(s.dim(`no deliveries for ${id}`));
        print(deliveriesTable(page.items, s, true));
        return 0;
      }),
    );
}
