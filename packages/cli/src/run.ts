import type { FlotillaClient, Session } from "@flotilla/client";
import type { PermissionPolicy } from "@flotilla/contracts";
import { type Command, Option } from "commander";
import { repoArg } from "./args.ts";
import { action, CliError, connect } from "./connection.ts";
import { changes, count, money, plural } from "./format.ts";
import { finishLine, Renderer } from "./render.ts";
import { type Style, styleFor } from "./style.ts";
import { submitTask } from "./task-wait.ts";
import { taskBody } from "./tasks.ts";
import { type TurnResult, turnExitCode, watchTurn } from "./watch.ts";

interface RunFlags {
  repo?: string;
  base?: string;
  model?: string;
  agent?: string;
  title?: string;
  permission?: PermissionPolicy;
  yes?: boolean;
  json?: boolean;
  queue?: boolean;
}

interface SendFlags {
  wait?: boolean;
  yes?: boolean;
  json?: boolean;
  model?: string;
  agent?: string;
}

const JSON_HELP = `
With --json, every event is printed as one JSON line and nothing is asked at the keyboard: without
--yes a permission ask is printed (as a permission.asked event) and the command waits until it is
answered with \`flotilla approve\` / \`flotilla reject\` (or elsewhere). Exit code: 0 when the turn
succeeds, 1 when it fails or is rejected by the server, 130 after Ctrl-C (which aborts the turn).`;

const QUEUE_HELP = `
With --queue the prompt is submitted as a task (\`flotilla task submit --wait\`): it waits for a free
slot in the scheduler, is retried on failures that a retry can help, and its result is printed when
it ends (--title does not apply; for priority, timeout, labels, verify and the rest use
\`flotilla task submit\`). Its permission policy defaults to allow. --json then prints { task, created }
once the task is final; exit 0 only when it succeeded. Ctrl-C stops waiting but leaves the task running.`;

export function registerRun(program: Command): void {
  program
    .command("run")
    .description("Start a session on a repository and follow its first turn live")
    .argument("<prompt>", "what the agent should do")
    .option("--repo <path|url>", "git repository: a local path or a git URL (default: current directory)")
    .option("--base <ref>", "ref to branch from (default HEAD)")
    .option("--model <provider/model>", "model, e.g. anthropic/claude-sonnet-4-5")
    .option("--agent <name>", "OpenCode agent")
    .option("--title <title>", "session title (default: the prompt's first line)")
    .addOption(
      new Option("--permission <policy>", "what the agent may do unasked").choices([
        "ask",
        "allow",
        "read-only",
      ]),
    )
    .option("-y, --yes", "allow every permission ask once, without asking")
    .option("--json", "print events as JSON lines")
    .option("--queue", "submit as a queued task and wait for its result (see below)")
    .addHelpText("after", `${JSON_HELP}\n${QUEUE_HELP}`)
    .action(
      action(async (prompt: string, flags: RunFlags, cmd: Command) => {
        if (flags.queue) {
          if (flags.title)
            throw new CliError("invalid_request", "--title does not apply to --queue: tasks have no title");
          return submitTask(connect(cmd), taskBody(prompt, flags), { ...flags, wait: true });
        }
        const { client, url } = connect(cmd);
        const session = await client.sessions.create({
          repo: repoArg(flags.repo),
          prompt,
          ...(flags.base ? { baseRef: flags.base } : {}),
          ...(flags.model ? { model: flags.model } : {}),
          ...(flags.agent ? { agent: flags.agent } : {}),
          ...(flags.title ? { title: flags.title } : {}),
          ...(flags.permission ? { permission: flags.permission } : {}),
        });
        const style = styleFor(process.stdout);
        if (!flags.json) header(session, style);
        return follow(client, url, session, 0, flags, style);
      }),
    );

  program
    .command("send")
    .description("Send a message to a session (a new turn); --wait follows it like run")
    .argument("<id>", "session id")
    .argument("<text>", "the message")
    .option("--wait", "follow the turn until it ends; exit code by its outcome")
    .option("-y, --yes", "with --wait: allow every permission ask once, without asking")
    .option("--json", "print the session (or with --wait the events, as JSON lines)")
    .option("--model <provider/model>", "model for this turn")
    .option("--agent <name>", "OpenCode agent for this turn")
    .addHelpText("after", JSON_HELP.replace("--json,", "--wait --json,"))
    .action(
      action(async (id: string, text: string, flags: SendFlags, cmd: Command) => {
        const { client, url } = connect(cmd);
        // The seq before the send: the turn's own turn.started comes after it.
        const before = flags.wait ? (await client.sessions.get(id)).lastSeq : 0;
        const session = await client.sessions.send(id, {
          text,
          ...(flags.model ? { model: flags.model } : {}),
          ...(flags.agent ? { agent: flags.agent } : {}),
        });
        const style = styleFor(process.stdout);
        if (flags.wait) return follow(client, url, session, before, flags, style);
        if (flags.json) process.stdout.write(`${JSON.stringify(session, null, 2)}\n`);
        else
          process.stdout.write(
            `sent; the turn is ${session.status}. Follow it: ${style.bold(`flotilla logs ${id} --follow`)}\n`,
          );
        return 0;
      }),
    );

  program
    .command("retry")
    .description(
      "Run a session's last prompt again; a session that failed to start starts again on a new harness",
    )
    .argument("<id>", "session id")
    .option("--wait", "follow the turn until it ends; exit code by its outcome")
    .option("-y, --yes", "with --wait: allow every permission ask once, without asking")
    .option("--json", "print the session (or with --wait the events, as JSON lines)")
    .addHelpText("after", JSON_HELP.replace("--json,", "--wait --json,"))
    .action(
      action(async (id: string, flags: Omit<SendFlags, "model" | "agent">, cmd: Command) => {
        const { client, url } = connect(cmd);
        const before = flags.wait ? (await client.sessions.get(id)).lastSeq : 0;
        const session = await client.sessions.retry(id);
        const style = styleFor(process.stdout);
        if (flags.wait) return follow(client, url, session, before, flags, style);
        if (flags.json) process.stdout.write(`${JSON.stringify(session, null, 2)}\n`);
        else
          process.stdout.write(
            `retrying; ${id} is ${session.status}. Follow it: ${style.bold(`flotilla logs ${id} --follow`)}\n`,
          );
        return 0;
      }),
    );
}

function header(s: Session, style: Style): void {
  process.stdout.write(`${style.bold(s.id)}  ${style.dim(`${s.repo} · ${s.model}`)}\n`);
}

/** Follows a turn, then prints the summary; returns the exit code. */
async function follow(
  client: FlotillaClient,
  url: string,
  session: Session,
  after: number,
  flags: { json?: boolean; yes?: boolean },
  style: Style,
): Promise<number> {
  const json = Boolean(flags.json);
  const interactive = !json && Boolean(process.stdin.isTTY);
  const renderer = json
    ? undefined
    : new Renderer({
        out: process.stdout,
        style,
        sessionId: session.id,
        summaryOwnsFinish: true,
        askHint: !interactive && !flags.yes,
        promptsAsks: interactive && !flags.yes,
      });
  const result = await watchTurn({
    client,
    url,
    sessionId: session.id,
    after,
    json,
    yes: Boolean(flags.yes),
    renderer,
    style,
    term: interactive ? { input: process.stdin, output: process.stdout } : undefined,
  });
  if (!json) await summary(client, session.id, result, style);
  return turnExitCode(result);
}

async function summary(client: FlotillaClient, id: string, r: TurnResult, style: Style): Promise<void> {
  const lines: string[] = [""];
  if (r.finished) lines.push(finishLine(r.finished, style));
  else if (r.interrupted)
    lines.push(
      `${style.yellow("■")} aborted${r.status === "idle" ? " before the turn started" : " (the server did not confirm the turn's end in time)"}`,
    );
  else if (r.status === "failed")
    lines.push(
      `${style.red("✗")} the session could not start${r.error ? `: ${r.error.message}` : ""}`,
      style.dim(`  try again: flotilla retry ${id} --wait`),
    );
  else
    lines.push(
      `${style.yellow("!")} the session is ${r.status ?? "in an unknown state"}${r.error ? `: ${r.error.message}` : ""}`,
    );

  const diff = await client.sessions.diff(id).catch(() => undefined);
  if (diff?.files.length) {
    const width = Math.max(...diff.files.map((f) => f.path.length));
    for (const f of diff.files) {
      const change = f.binary ? style.dim("binary") : changes(f.additions, f.deletions, style);
      const kind = f.status === "modified" ? "" : `  ${style.dim(f.status)}`;
      lines.push(`  ${f.path.padEnd(width)}  ${change}${kind}`);
    }
  } else if (diff) lines.push(style.dim("  no files changed"));

  const t = r.tokens;
  if (t.input + t.output > 0) {
    const extra = [
      t.reasoning ? `${count(t.reasoning)} reasoning` : "",
      t.cacheRead ? `${count(t.cacheRead)} cached` : "",
    ].filter(Boolean);
    lines.push(
      style.dim(
        `  tokens ${count(t.input)} in · ${count(t.output)} out${extra.length ? ` · ${extra.join(" · ")}` : ""} · cost ${money(r.cost)}`,
      ),
    );
  }
  const tail = diff?.files.length
    ? `${plural(diff.files.length, "file")} changed · flotilla diff ${id}`
    : `flotilla logs ${id}`;
  lines.push(style.dim(`  ${tail}`));
  process.stdout.write(`${lines.join("\n")}\n`);
}
