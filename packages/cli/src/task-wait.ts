import type { FlotillaClient } from "@flotilla/client";
import { type CreateTaskBody, FINAL_TASK_STATES, type Task } from "@flotilla/contracts";
import { type Connection, EXIT } from "./connection.ts";
import { Renderer } from "./render.ts";
import { type Style, styleFor } from "./style.ts";
import { historyNote, resultLines, taskStateColor } from "./task-view.ts";
import { watchTurn } from "./watch.ts";

export interface SubmitFlags {
  wait?: boolean;
  json?: boolean;
  yes?: boolean;
}

// While no session is being followed there is nothing to stream: the task row is all there is.
const POLL_MS = 1000;
// While following, the task is checked now and then in case its attempt ends without the session
// saying so (cancelled while provisioning, lease lost, the session deleted under it).
const WATCHDOG_MS = 2000;
// After the attempt is over, the stream gets this long to deliver its last events.
const GRACE_MS = 3000;

const isFinal = (t: Task) => FINAL_TASK_STATES.includes(t.state);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * `task submit` and `run --queue`: submits, then either prints the id or waits for a final state,
 * following each attempt's session live, and prints the result. Exit 0 only on `succeeded`.
 */
export async function submitTask(
  conn: Connection,
  body: CreateTaskBody,
  flags: SubmitFlags,
): Promise<number> {
  const { client } = conn;
  const { task, created } = await client.tasks.submit(body);
  const s = styleFor(process.stdout);
  const again = created ? "" : `already submitted (idempotency key ${task.idempotencyKey}): `;
  if (!flags.wait) {
    if (flags.json) {
      process.stdout.write(`${JSON.stringify({ task, created }, null, 2)}\n`);
      return EXIT.ok;
    }
    // Only the id on stdout, so that `id=$(flotilla task submit …)` needs no parsing; the rest is for people.
    process.stdout.write(`${task.id}\n`);
    const e = styleFor(process.stderr);
    process.stderr.write(
      `${again}${again ? "the task is " : ""}${taskStateColor(task.state, e)}${e.dim(` · flotilla task show ${task.id}`)}\n`,
    );
    return EXIT.ok;
  }
  if (!flags.json) {
    process.stdout.write(`${s.bold(task.id)}  ${s.dim(`${task.repo} · ${task.model}`)}\n`);
    if (again) process.stdout.write(`${s.yellow(`  ${again}following the existing task`)}\n`);
  }
  const final = await waitTask(conn, task.id, {
    json: Boolean(flags.json),
    yes: Boolean(flags.yes),
    style: s,
  });
  if (flags.json) process.stdout.write(`${JSON.stringify({ task: final, created }, null, 2)}\n`);
  else {
    const diff =
      final.sessionId && final.result?.files
        ? await client.sessions.diff(final.sessionId).catch(() => undefined)
        : undefined;
    const tail = [
      `flotilla task show ${final.id}`,
      final.sessionId && final.result?.files ? `flotilla diff ${final.sessionId}` : "",
    ];
    const lines = [
      "",
      ...resultLines(final, s, diff, process.stdout.columns),
      s.dim(`  ${tail.filter(Boolean).join(" · ")}`),
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
  }
  return final.state === "succeeded" ? EXIT.ok : EXIT.failed;
}

interface WaitOptions {
  json: boolean;
  yes: boolean;
  style: Style;
}

/**
 * Waits until the task is final. Each attempt's session is followed with the run renderer (its
 * events are the live part); between attempts the task is polled and its new history entries are
 * printed as notes. Ctrl-C stops waiting and leaves the task alone: it is durable queued work, not
 * this terminal's turn, so it is not aborted (`flotilla task cancel` does that).
 */
export async function waitTask(conn: Connection, id: string, o: WaitOptions): Promise<Task> {
  const { client } = conn;
  const followed = new Set<string>();
  let shown = 0;
  const detach = () => {
    if (!o.json) process.stdout.write("\n");
    process.stderr.write(
      `stopped waiting; ${id} carries on. Follow it: flotilla task show ${id} · stop it: flotilla task cancel ${id}\n`,
    );
    process.exit(EXIT.interrupted);
  };
  process.on("SIGINT", detach);
  try {
    for (;;) {
      const task = await client.tasks.get(id);
      const history = task.history ?? [];
      if (!o.json)
        for (; shown < history.length; shown++) {
          const h = history[shown]!;
          if (!FINAL_TASK_STATES.includes(h.to)) process.stdout.write(`${historyNote(h, o.style)}\n`);
        }
      if (isFinal(task)) return task;
      const current = task.attemptList?.find((a) => a.n === task.attempts && !a.finishedAt);
      if (!o.json && task.state === "running" && current?.sessionId && !followed.has(current.sessionId)) {
        followed.add(current.sessionId);
        await followAttempt(client, conn.url, id, current.n, current.sessionId, o, detach);
        continue;
      }
      await sleep(POLL_MS);
    }
  } finally {
    process.off("SIGINT", detach);
  }
}

async function followAttempt(
  client: FlotillaClient,
  url: string,
  taskId: string,
  n: number,
  sessionId: string,
  o: WaitOptions,
  detach: () => void,
): Promise<void> {
  const interactive = Boolean(process.stdin.isTTY);
  const renderer = new Renderer({
    out: process.stdout,
    style: o.style,
    sessionId,
    askHint: !interactive && !o.yes,
    promptsAsks: interactive && !o.yes,
  });
  process.stdout.write(`${o.style.dim(`  · attempt ${n}: session ${sessionId}`)}\n`);
  const ac = new AbortController();
  let grace: NodeJS.Timeout | undefined;
  let checking = false;
  const watchdog = setInterval(() => {
    if (checking || grace) return;
    checking = true;
    client.tasks
      .get(taskId)
      .then((t) => {
        const a = t.attemptList?.find((x) => x.n === n);
        if (isFinal(t) || a?.finishedAt) grace = setTimeout(() => ac.abort(), GRACE_MS);
      })
      // A failed look is retried on the next tick; the main loop reports lasting errors.
      .catch(() => {})
      .finally(() => {
        checking = false;
      });
  }, WATCHDOG_MS);
  try {
    await watchTurn({
      client,
      url,
      sessionId,
      after: 0,
      json: false,
      yes: o.yes,
      renderer,
      style: o.style,
      term: interactive ? { input: process.stdin, output: process.stdout } : undefined,
      signal: ac.signal,
      onInterrupt: detach,
    });
  } finally {
    clearInterval(watchdog);
    clearTimeout(grace);
  }
}
