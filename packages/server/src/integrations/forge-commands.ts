import { createHash, randomBytes } from "node:crypto";
import { FINAL_TASK_STATES, type Task } from "@flotilla/contracts";
import type { Principal } from "../identity/principal.ts";
import { DEFAULT_ORG } from "../identity/tokens.ts";
import type { Db } from "../platform/db/pool.ts";
import type { Logger } from "../platform/logger.ts";
import type { TaskService } from "../tasks/tasks.ts";
import type { ForgeClient, Forges } from "./forges/forge.ts";

const COMMAND = /^\/flotilla\s+([\s\S]+)$/;

export type WebhookOutcome =
  | { status: 401; error: string }
  | { status: 200; ignored: string }
  | { status: 202; taskId: string; created: boolean };

/**
 * Work that starts on a forge: an issue or pull-request comment `/flotilla <prompt>`, by someone
 * the forge's `commandAssociations` allow, becomes a task on that repository with the issue's
 * thread as its context and a pull request to open on success; when the task ends, the result is
 * posted back as a comment on the issue. Forge-started tasks belong to the forge's own token row
 * (one per forge, never usable to sign in), so they are counted and listed like any other.
 */
export class ForgeCommands {
  constructor(
    private readonly db: Db,
    private readonly forges: Forges,
    private readonly tasks: TaskService,
    private readonly logger: Logger,
  ) {
    tasks.onTransition((t) => {
      if (FINAL_TASK_STATES.includes(t.to) && t.task.labels["forge.issue"])
        this.reply(t.task).catch((err) =>
          this.logger.warn({ err, task: t.task.id }, "could not post a task's result back"),
        );
    });
  }

  /** A webhook delivery from forge `name`: verified by its signature before anything is read. */
  async receive(
    name: string,
    body: string,
    headers: { event?: string; signature?: string; delivery?: string },
  ): Promise<WebhookOutcome> {
    const forge = this.forges.byName(name);
    if (!forge || !(await forge.verifyWebhook(body, headers.signature)))
      return { status: 401, error: "the signature does not match this forge's webhook secret" };
    if (headers.event !== "issue_comment")
      return { status: 200, ignored: `event ${headers.event ?? "(none)"}` };
    const e = JSON.parse(body) as IssueCommentEvent;
    if (e.action !== "created") return { status: 200, ignored: `comment ${e.action}` };
    const m = COMMAND.exec(e.comment.body.trim());
    if (!m) return { status: 200, ignored: "not a /flotilla command" };
    const [owner, repoName] = e.repository.full_name.split("/") as [string, string];
    const repo = { owner, name: repoName };
    if (!(await forge.mayCommand(repo, e.comment.user.login, e.comment.author_association)))
      return {
        status: 200,
        ignored: `${e.comment.user.login}${e.comment.author_association ? ` (${e.comment.author_association})` : ""} may not start work`,
      };
    const thread = await forge.issue(repo, e.issue.number);
    const prompt = [
      m[1]!.trim(),
      "---",
      `This was asked by @${e.comment.user.login} on ${thread.url}, "${thread.title}":`,
      thread.body.trim() || "(no description)",
      ...thread.comments
        .filter((c) => c.body.trim() !== e.comment.body.trim())
        .map((c) => `@${c.user} wrote:\n${c.body.trim()}`),
    ].join("\n\n");
    const { task, created } = await this.tasks.submit(
      {
        repo: e.repository.clone_url,
        prompt,
        labels: {
          "forge.name": forge.settings.name,
          "forge.repo": e.repository.full_name,
          "forge.issue": String(e.issue.number),
          "forge.user": e.comment.user.login,
        },
        // A redelivery of the same webhook is the same task.
        idempotencyKey: `forge:${forge.settings.name}:${headers.delivery ?? e.comment.id}`,
        pr: { draft: true },
      },
      await this.principal(forge),
    );
    return { status: 202, taskId: task.id, created };
  }

  private async reply(task: Task): Promise<void> {
    const forge = this.forges.byName(task.labels["forge.name"] ?? "");
    if (!forge) return;
    const [owner, name] = (task.labels["forge.repo"] ?? "").split("/") as [string, string];
    const pr = task.result?.pullRequest;
    const body =
      task.state === "succeeded"
        ? [
            pr ? `Done: ${pr.url}` : "Done, with no changes to propose.",
            task.result?.summary ? `> ${task.result.summary.slice(0, 2000).split("\n").join("\n> ")}` : "",
            task.result
              ? `${task.result.files} file(s) changed, +${task.result.additions} −${task.result.deletions}.`
              : "",
          ]
            .filter(Boolean)
            .join("\n\n")
        : `Flotilla task ${task.id} ended ${task.state.replace("_", " ")}: ${task.error?.message ?? "no reason given"}`;
    await forge.comment({ owner, name }, Number(task.labels["forge.issue"]), body);
  }

  /** The forge's own token row: who its tasks belong to. Its secret is never made, so it signs nobody in. */
  private async principal(forge: ForgeClient): Promise<Principal> {
    const id = `tok_forge_${forge.settings.name}`;
    await this.db.query(
      `insert into tokens (id, org_id, name, role, hash, prefix) values ($1, $2, $3, 'member', $4, 'forge')
       on conflict (id) do nothing`,
      [
        id,
        DEFAULT_ORG,
        `forge ${forge.settings.name}`,
        createHash("sha256").update(randomBytes(32)).digest("hex"),
      ],
    );
    return { tokenId: id, orgId: DEFAULT_ORG, role: "member" };
  }
}

/** The parts of GitHub's `issue_comment` webhook payload read here. */
interface IssueCommentEvent {
  action: string;
  // GitHub says how the author relates to the repository; Gitea does not (its forge asks instead).
  comment: { id: number; body: string; author_association?: string; user: { login: string } };
  issue: { number: number; pull_request?: unknown };
  repository: { full_name: string; clone_url: string };
}
