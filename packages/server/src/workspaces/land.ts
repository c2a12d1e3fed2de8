import { execFile, execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  constants,
  existsSync,
  fstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import {
  type BranchState,
  type CommitBody,
  type CommitInfo,
  type CommitResult,
  FlotillaError,
  type GitIdentity,
  type MergeBody,
  type MergeResult,
  type PullRequestBody,
  type PullRequestInfo,
  type PushBody,
  type PushResult,
} from "@flotilla/contracts";
import type { AutoCommit, Config } from "../config/config.ts";
import type { Principal } from "../identity/principal.ts";
import type { Forges } from "../integrations/forges/forge.ts";
import type { Db } from "../platform/db/pool.ts";
import type { EventBus } from "../platform/events/bus.ts";
import type { EventLog } from "../platform/events/log.ts";
import { egressPolicy, gitEgressArgs } from "../platform/http/egress.ts";
import type { Logger } from "../platform/logger.ts";
import type { ExecResult } from "../runtime/driver.ts";
import type { SessionRow, SessionService } from "../sessions/sessions.ts";
import { WORKING_SQL } from "../sessions/status.ts";
import { git as hostGit } from "./git.ts";
import { isGitUrl, workspaceDiff } from "./workspaces.ts";

/** The agent, as the shard's git identity names it (runtime/shard-layout.ts): credited as co-author. */
export const AGENT_IDENTITY: GitIdentity = { name: "Flotilla agent", email: "agent@flotilla.invalid" };

const LOG_FORMAT = "%H%x1f%s%x1f%an%x1f%ae%x1f%aI%x1e";

function parseLog(out: string): CommitInfo[] {
  return out
    .split("\x1e")
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => {
      const [sha, subject, name, email, at] = l.split("\x1f");
      return {
        sha: sha!,
        subject: subject ?? "",
        author: { name: name ?? "", email: email ?? "" },
        at: at ?? "",
      };
    });
}

const short = (sha: string) => sha.slice(0, 7);

/** The message's trailer crediting the agent, added once. */
function withCoAuthor(message: string, coAuthor: GitIdentity): string {
  const line = `Co-authored-by: ${coAuthor.name} <${coAuthor.email}>`;
  const body = message.replace(/\s+$/, "");
  return body.includes(line) ? `${body}\n` : `${body}\n\n${line}\n`;
}

/**
 * Landing a session's work: commit it on the session's branch, merge that branch into a branch of
 * the user's own repository, or apply it there as a patch.
 *
 * Two sides, and git never crosses between them as code: everything in the workspace runs through
 * the runtime driver (the agent can write its hooks and config), and the user's repository is only
 * ever touched by the control plane's own git. What crosses is data: a bundle of the branch's new
 * commits, written in the sandbox and fetched (with object checks) into the user's repository
 * under a temporary ref that is deleted again, so no `flotilla/*` branch is ever made there.
 */
export class LandingService {
  /** One landing action per workspace at a time (a commit and a merge of the same branch would race). */
  private readonly busy = new Set<string>();

  constructor(
    private readonly db: Db,
    private readonly sessions: SessionService,
    private readonly log: EventLog,
    private readonly logger: Logger,
    private readonly forges: Forges,
    private readonly config: Config,
  ) {}

  async branch(id: string, p: Principal): Promise<BranchState> {
    const r = await this.sessions.local(id, p);
    const branch = this.branchOf(r);
    const head = (await this.git(r, ["rev-parse", "HEAD"])).stdout.trim();
    const [commits, changes, author, target, merged] = await Promise.all([
      this.commits(r, branch),
      workspaceDiff(this.sessions.git(r), r.path, head),
      this.defaultAuthor(r, p),
      // No target to merge into (a detached or remote-only repository) is an answer, not an error.
      this.defaultTarget(r).catch(() => null),
      this.db.query<{
        merged_into: string | null;
        merged_commit: string | null;
        merged_at: Date | null;
        pushed_to: string | null;
        pushed_commit: string | null;
        pushed_at: Date | null;
        pr: PullRequestInfo | null;
      }>(
        `select merged_into, merged_commit, merged_at, pushed_to, pushed_commit, pushed_at,
           (select info from pull_requests where workspace_id = w.id) as pr
         from workspaces w where id = $1`,
        [r.workspace_id],
      ),
    ]);
    const m = merged.rows[0];
    // A repository with no remote simply has nothing to push to: the state says so with null.
    const remote = await this.remoteOf(r, undefined).catch(() => null);
    return {
      branch,
      baseCommit: r.base_commit,
      head,
      commits,
      uncommitted: changes.files.length,
      draftMessage: await this.draft(r, changes.files),
      author,
      coAuthor: AGENT_IDENTITY,
      local: !isGitUrl(r.repo),
      target,
      merged:
        m?.merged_into && m.merged_commit && m.merged_at
          ? { into: m.merged_into, commit: m.merged_commit, at: m.merged_at.toISOString() }
          : null,
      remote: remote
        ? { url: remote, forge: this.forges.forRemote(remote)?.forge.settings.name ?? null }
        : null,
      pushed:
        m?.pushed_to && m.pushed_commit && m.pushed_at
          ? { to: m.pushed_to, commit: m.pushed_commit, at: m.pushed_at.toISOString() }
          : null,
      pullRequest: m?.pr ?? null,
    };
  }

  /** What a repository commits by itself: `git.projects.<repo>.autoCommit`, else `git.autoCommit`. */
  autoCommitOf(repo: string): AutoCommit {
    return this.config.git.projects[repo]?.autoCommit ?? this.config.git.autoCommit;
  }

  /** Commits at the end of every successful turn, in repositories set to `autoCommit: turn`. */
  watch(bus: EventBus): () => void {
    return bus.subscribeLocal((e) => {
      if (e.type !== "turn.finished" || e.data.outcome !== "success") return;
      this.autoCommit(e.sessionId).catch((err) =>
        this.logger.warn({ err, session: e.sessionId }, "could not commit a turn's changes"),
      );
    });
  }

  private async autoCommit(sessionId: string): Promise<void> {
    const { rows } = await this.db.query<{ org_id: string; repo: string }>(
      "select s.org_id, w.repo from sessions s join workspaces w on w.id = s.workspace_id where s.id = $1",
      [sessionId],
    );
    const row = rows[0];
    if (!row || this.autoCommitOf(row.repo) !== "turn") return;
    // The control plane commits on the repository's behalf: the author is the repository's own identity.
    await this.commit(sessionId, {}, { tokenId: "", orgId: row.org_id, role: "admin" }).catch((e) => {
      // Nothing changed, or the next turn already started: nothing to do now.
      if (e instanceof FlotillaError && (e.code === "nothing_to_commit" || e.code === "session_busy")) return;
      throw e;
    });
  }

  async commit(id: string, body: CommitBody, p: Principal): Promise<CommitResult> {
    const r = await this.sessions.local(id, p);
    return this.exclusive(r, async () => {
      await this.assertQuiet(r);
      const c = await this.commitIn(r, body, p);
      if (!c) throw new FlotillaError("nothing_to_commit", "the workspace has no changes to commit");
      return c;
    });
  }

  async merge(id: string, body: MergeBody, p: Principal): Promise<MergeResult> {
    const r = await this.sessions.local(id, p);
    if (isGitUrl(r.repo))
      throw new FlotillaError(
        "conflict",
        `the session's repository is remote (${r.repo}); merge works on a local repository only`,
        { field: "repo" },
      );
    return this.exclusive(r, async () => {
      await this.assertQuiet(r);
      const repo = r.repo;
      const into = body.into ?? (await this.defaultTarget(r));
      if (!into)
        throw new FlotillaError("invalid_request", `${repo} has no branch checked out: name one with into`, {
          field: "into",
        });
      const target = await hostGit(["rev-parse", "--verify", "--quiet", `refs/heads/${into}^{commit}`], {
        cwd: repo,
      }).catch(() => {
        throw new FlotillaError("invalid_request", `${repo} has no branch ${JSON.stringify(into)}`, {
          field: "into",
        });
      });
      const tgt = target.stdout.trim();
      if (body.patch) return this.patch(r, repo, into);
      try {
        return await this.mergeBranch(r, repo, into, tgt, body, p);
      } catch (e) {
        if (e instanceof Resolve) return this.handToAgent(r, repo, into, e, p);
        throw e;
      }
    });
  }

  // ---- commit --------------------------------------------------------------------------------

  /** Commits every change of the workspace on the session's branch; null when there is none. */
  private async commitIn(r: SessionRow, body: CommitBody, p: Principal): Promise<CommitResult | null> {
    const branch = this.branchOf(r);
    const onBranch = await this.run(r, ["symbolic-ref", "-q", "--short", "HEAD"], [0, 1]);
    if (onBranch.stdout.trim() !== branch)
      throw new FlotillaError(
        "conflict",
        `the workspace is on ${onBranch.stdout.trim() || "a detached HEAD"}, not the session's branch ${branch}: check it out again first`,
      );
    await this.git(r, ["add", "-A", "."]);
    const staged = await this.run(r, ["diff", "--cached", "--quiet"], [0, 1]);
    if (staged.exitCode === 0) return null;
    const changed = (await this.git(r, ["diff", "--cached", "--name-only", "-z"])).stdout
      .split("\0")
      .filter(Boolean);
    const author = body.author ?? (await this.defaultAuthor(r, p));
    const message = withCoAuthor(
      body.message ??
        (await this.draft(
          r,
          changed.map((path) => ({ path })),
        )),
      AGENT_IDENTITY,
    );
    // The commit runs in the sandbox, so the workspace's own hooks run there too. The shard's git has
    // no signing key: a signing setting the agent planted would only make the commit fail.
    await this.git(
      r,
      ["-c", "commit.gpgsign=false", "commit", "--quiet", "-F", "-"],
      identityEnv(author),
      message,
    );
    const [info] = parseLog((await this.git(r, ["log", "-1", `--format=${LOG_FORMAT}`, "HEAD"])).stdout);
    const full = (await this.git(r, ["log", "-1", "--format=%B", "HEAD"])).stdout;
    await this.log.append(r.id, [
      {
        type: "git",
        data: {
          action: "commit",
          branch,
          commit: info!.sha,
          summary: `committed ${short(info!.sha)} on ${branch}: ${info!.subject} (${changed.length} file${changed.length === 1 ? "" : "s"})`,
        },
      },
    ]);
    return { branch, commit: info!, message: full, files: changed.length };
  }

  // ---- merge ---------------------------------------------------------------------------------

  private async mergeBranch(
    r: SessionRow,
    repo: string,
    into: string,
    tgt: string,
    body: MergeBody,
    p: Principal,
  ): Promise<MergeResult> {
    const branch = this.branchOf(r);
    // A checked-out target with uncommitted changes is refused before anything is done, so the
    // refusal changes nothing anywhere (moveBranch checks again, as the user may edit meanwhile).
    const checkout = await checkedOutAt(repo, into);
    if (checkout) await assertClean(checkout, into);
    const committed = await this.commitIn(
      r,
      body.squash ? {} : { message: body.message, author: body.author },
      p,
    );
    const ahead = await this.commits(r, branch);
    if (ahead.length === 0)
      throw new FlotillaError(
        "nothing_to_commit",
        `${branch} has no commits and the workspace no changes to merge`,
      );
    const author = body.author ?? (await this.defaultAuthor(r, p));
    const src = await this.fetchBranch(r, repo, branch);
    const tmpRef = `refs/flotilla/land/${r.id}`;
    try {
      const g = (args: string[], env?: Record<string, string>) => hostGit(args, { cwd: repo, env });
      const isAncestor = (a: string, b: string) =>
        g(["merge-base", "--is-ancestor", a, b]).then(
          () => true,
          () => false,
        );
      if (await isAncestor(src, tgt)) {
        return {
          result: "up-to-date",
          into,
          commit: tgt,
          committed,
          worktree: "untouched",
          files: [],
          message: `${into} already has every commit of ${branch}`,
        };
      }
      const ff = await isAncestor(tgt, src);
      let tree: string | undefined;
      if (!ff || body.squash) {
        if (ff) tree = (await g(["rev-parse", `${src}^{tree}`])).stdout.trim();
        else
          tree = await this.mergeTree(repo, into, tgt, src).catch((e) => {
            if (body.resolve && e instanceof FlotillaError && e.code === "merge_conflict")
              throw new Resolve(e, committed);
            if (committed && e instanceof FlotillaError)
              e.message += ` (the workspace's changes were committed on ${branch} first, as ${short(committed.commit.sha)})`;
            throw e;
          });
      }
      let next: string;
      if (body.squash) {
        const msg = withCoAuthor(body.message ?? (await this.squashMessage(r, ahead)), AGENT_IDENTITY);
        next = await commitTree(repo, tree!, [tgt], msg, author);
      } else if (ff) next = src;
      else
        next = await commitTree(
          repo,
          tree!,
          [tgt, src],
          withCoAuthor(
            body.message ?? `Merge ${branch} (Flotilla session ${r.id}) into ${into}`,
            AGENT_IDENTITY,
          ),
          author,
        );
      const files = (await g(["diff", "--name-only", "-z", tgt, next])).stdout.split("\0").filter(Boolean);
      const worktree = await this.moveBranch(repo, into, tgt, next, r.id);
      const result: MergeResult["result"] = body.squash ? "squashed" : ff ? "fast-forward" : "merged";
      const what =
        result === "fast-forward"
          ? `fast-forwarded ${into} to ${short(next)}`
          : result === "squashed"
            ? `squashed ${branch} onto ${into} as ${short(next)}`
            : `merged ${branch} into ${into} as ${short(next)}`;
      const message = `${what} (${files.length} file${files.length === 1 ? "" : "s"}); ${
        worktree === "updated"
          ? `${into} is checked out in ${repo}: its working tree now shows the change`
          : `${into} is not checked out, so no working tree changed`
      }`;
      await this.recordMerge(r, into, next, { action: "merge", branch, commit: next, into, summary: what });
      return { result, into, commit: next, committed, worktree, files, message };
    } finally {
      await hostGit(["update-ref", "-d", tmpRef], { cwd: repo }).catch((err) =>
        this.logger.warn({ err, repo, ref: tmpRef }, "could not delete the temporary ref of a merge"),
      );
    }
  }

  /**
   * The branch's commits since the workspace's base, carried into the user's repository as data: a
   * bundle made in the sandbox, copied out without following links, checked object by object.
   * Returns the branch head's id, held by a temporary ref the caller deletes.
   */
  private async fetchBranch(
    r: SessionRow,
    repo: string,
    branch: string,
    dest = `refs/flotilla/land/${r.id}`,
    opts: { whole?: boolean } = {},
  ): Promise<string> {
    const inWorkspace = join(resolve(r.path, ".."), `.land-${randomBytes(6).toString("hex")}.bundle`);
    const local = mkdtempSync(join(tmpdir(), "flotilla-land-"));
    const copy = join(local, "branch.bundle");
    try {
      await this.git(r, [
        "bundle",
        "create",
        "--quiet",
        inWorkspace,
        `refs/heads/${branch}`,
        ...(opts.whole ? [] : [`^${r.base_commit}`]),
      ]);
      // The agent could have swapped the file for a link to something of ours, or a pipe: read it
      // through one descriptor that follows no link, does not block, and must be a plain file.
      const fd = openSync(inWorkspace, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      try {
        if (!fstatSync(fd).isFile()) throw new FlotillaError("conflict", "the branch's bundle is not a file");
        writeFileSync(copy, readFileSync(fd));
      } finally {
        closeSync(fd);
      }
      await hostGit(
        [
          "-c",
          "transfer.fsckObjects=true",
          "fetch",
          "--quiet",
          "--no-tags",
          "--no-write-fetch-head",
          copy,
          `+refs/heads/${branch}:${dest}`,
        ],
        { cwd: repo, timeoutMs: 600_000 },
      ).catch((e) => {
        throw new FlotillaError("conflict", `could not bring ${branch} into ${repo}: ${errText(e)}`);
      });
      return (await hostGit(["rev-parse", dest], { cwd: repo })).stdout.trim();
    } finally {
      rmSync(local, { recursive: true, force: true });
      rmSync(inWorkspace, { force: true });
    }
  }

  /** The merged tree of two commits, computed without a working tree; a conflict is refused, files named. */
  private async mergeTree(repo: string, into: string, tgt: string, src: string): Promise<string> {
    try {
      const { stdout } = await hostGit(
        ["merge-tree", "--write-tree", "--name-only", "--no-messages", tgt, src],
        {
          cwd: repo,
        },
      );
      return stdout.split("\n")[0]!.trim();
    } catch (e) {
      const err = e as { code?: number; stdout?: string };
      if (err.code === 1 && err.stdout) {
        const files = [...new Set(err.stdout.split("\n").slice(1).filter(Boolean))];
        throw new FlotillaError(
          "merge_conflict",
          `the session's branch conflicts with ${into} in ${files.length} file${files.length === 1 ? "" : "s"}: ${files.join(", ")}`,
          { field: "into", details: { into, files } },
        );
      }
      throw e;
    }
  }

  /**
   * Points `into` at `next`. When `into` is checked out (in the repository or a worktree of it), its
   * working tree must be clean and is then moved with it by a fast-forward; otherwise only the ref
   * moves, and only if nobody moved it meanwhile.
   */
  private async moveBranch(
    repo: string,
    into: string,
    tgt: string,
    next: string,
    sessionId: string,
  ): Promise<"untouched" | "updated"> {
    const checkout = await checkedOutAt(repo, into);
    if (!checkout) {
      await hostGit(
        ["update-ref", "-m", `flotilla: merge session ${sessionId}`, `refs/heads/${into}`, next, tgt],
        {
          cwd: repo,
        },
      ).catch((e) => {
        throw new FlotillaError("conflict", `${into} moved while merging; try again (${errText(e)})`);
      });
      return "untouched";
    }
    await assertClean(checkout, into);
    await hostGit(["merge", "--ff-only", "--quiet", next], { cwd: checkout }).catch((e) => {
      throw new FlotillaError("worktree_dirty", `could not update ${checkout}: ${errText(e)}`, {
        field: "into",
        details: { files: [], path: checkout },
      });
    });
    return "updated";
  }

  /**
   * A conflict handed to the agent: the target branch is brought into the workspace (as data, a
   * bundle the control plane's git writes and the sandbox's git reads) as `target/<into>`, and a
   * turn asks the agent to merge it and resolve the conflicts. Merging again afterwards is then a
   * fast-forward or a clean merge.
   */
  private async handToAgent(
    r: SessionRow,
    repo: string,
    into: string,
    c: Resolve,
    p: Principal,
  ): Promise<MergeResult> {
    const files = (c.conflict.details as { files: string[] }).files;
    const bundle = join(resolve(r.path, ".."), `.target-${randomBytes(6).toString("hex")}.bundle`);
    try {
      const fromBase = await hostGit(["merge-base", "--is-ancestor", r.base_commit, `refs/heads/${into}`], {
        cwd: repo,
      }).then(
        () => true,
        () => false,
      );
      await hostGit(
        [
          "bundle",
          "create",
          "--quiet",
          bundle,
          `refs/heads/${into}`,
          ...(fromBase ? [`^${r.base_commit}`] : []),
        ],
        {
          cwd: repo,
        },
      );
      chmodSync(bundle, 0o644);
      await this.git(r, [
        "fetch",
        "--quiet",
        "--no-tags",
        bundle,
        `+refs/heads/${into}:refs/remotes/target/${into}`,
      ]);
    } finally {
      rmSync(bundle, { force: true });
    }
    const text = [
      `Merge \`target/${into}\` into your branch: it is the user's \`${into}\`, which moved on since you started and now conflicts with your work in ${files.map((f) => `\`${f}\``).join(", ")}.`,
      `Run \`git merge target/${into}\`, resolve every conflict so that both the user's change and yours still do what they were meant to, make sure the result works, and commit the merge. Then say briefly how you resolved each file.`,
    ].join("\n\n");
    await this.sessions.send(r.id, { text }, p);
    return {
      result: "resolving",
      into,
      commit: null,
      committed: c.committed,
      worktree: "untouched",
      files,
      message: `${into} conflicts with ${this.branchOf(r)} in ${files.join(", ")}: the agent is merging it and resolving them; merge again when its turn ends`,
    };
  }

  // ---- patch ---------------------------------------------------------------------------------

  /** The workspace's changes against its base, committed or not, applied to the user's working tree. */
  private async patch(r: SessionRow, repo: string, into: string): Promise<MergeResult> {
    const branch = this.branchOf(r);
    const checkout = await checkedOutAt(repo, into);
    if (!checkout)
      throw new FlotillaError(
        "invalid_request",
        `${into} is not checked out in ${repo}: a patch applies to a working tree, so check ${into} out first`,
        { field: "into" },
      );
    const diff = await workspaceDiff(this.sessions.git(r), r.path, r.base_commit, { binary: true });
    if (diff.files.length === 0)
      throw new FlotillaError("nothing_to_commit", "the workspace has no changes against its base to apply");
    const dir = mkdtempSync(join(tmpdir(), "flotilla-patch-"));
    const file = join(dir, "session.patch");
    try {
      writeFileSync(file, diff.patch);
      // Checked whole first: a patch that does not apply leaves the working tree exactly as it was.
      await hostGit(["apply", "--check", file], { cwd: checkout }).catch((e) => {
        const text = String((e as { stderr?: string }).stderr ?? "");
        const files = [
          ...new Set(
            [...text.matchAll(/error: (?:patch failed: )?([^:\n]+?)(?::\d+)?: /g)].map((m) => m[1]!),
          ),
        ];
        throw new FlotillaError(
          "merge_conflict",
          `the session's changes do not apply to ${checkout}: ${errText(e)}`,
          { field: "into", details: { into, files } },
        );
      });
      await hostGit(["apply", file], { cwd: checkout });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const files = diff.files.map((f) => f.path);
    const what = `applied ${branch} to ${checkout} as uncommitted changes (${files.length} file${files.length === 1 ? "" : "s"})`;
    await this.recordMerge(r, into, null, { action: "patch", branch, into, summary: what });
    return {
      result: "patched",
      into,
      commit: null,
      committed: null,
      worktree: "patched",
      files,
      message: what,
    };
  }

  // ---- push and pull requests ----------------------------------------------------------------

  /**
   * Pushes the session's branch (its uncommitted changes committed first) to a remote. The push is
   * made by the control plane's git from a bare mirror it keeps per remote, never from the
   * workspace: the forge's credentials reach only that one git process, through a credential
   * helper that reads them from its environment, so they are never in a URL, a file, the sandbox
   * or a log. The branch on the remote is Flotilla's own and is overwritten (`+`), as an agent may
   * have rewritten its history.
   */
  async push(id: string, body: PushBody, p: Principal): Promise<PushResult> {
    const r = await this.sessions.local(id, p);
    return this.exclusive(r, async () => {
      await this.assertQuiet(r);
      return this.pushIn(r, body, p);
    });
  }

  private async pushIn(r: SessionRow, body: PushBody, p: Principal): Promise<PushResult> {
    const branch = this.branchOf(r);
    const remote = await this.remoteOf(r, body.remote);
    // Judged before anything is committed, and again at the push itself, pinned (egress.ts).
    await gitEgressArgs(remote, "remote", egressPolicy(this.config));
    const committed = await this.commitIn(r, { author: body.author }, p);
    if ((await this.commits(r, branch)).length === 0)
      throw new FlotillaError(
        "nothing_to_commit",
        `${branch} has no commits and the workspace no changes to push`,
      );
    const mirror = this.mirrorOf(remote);
    const hasBase = await hostGit(["cat-file", "-e", `${r.base_commit}^{commit}`], { cwd: mirror }).then(
      () => true,
      () => false,
    );
    const head = await this.fetchBranch(r, mirror, branch, `refs/heads/${branch}`, { whole: !hasBase });
    const target = this.forges.forRemote(remote);
    const creds = target ? await target.forge.gitCredentials(target.repo) : undefined;
    const redact = (text: string) => (creds ? text.split(creds.password).join("***") : text);
    const pin = await gitEgressArgs(remote, "remote", egressPolicy(this.config));
    await hostGit(
      [
        ...pin,
        "-c",
        "credential.helper=",
        ...(creds
          ? [
              "-c",
              // The helper's script names the variables, not their values.
              `credential.helper=!f() { test "$1" = get || exit 0; echo "username=$FLOTILLA_GIT_USERNAME"; echo "password=$FLOTILLA_GIT_PASSWORD"; }; f`,
            ]
          : []),
        "push",
        "--quiet",
        "--no-verify",
        remote,
        `+refs/heads/${branch}:refs/heads/${branch}`,
      ],
      {
        cwd: mirror,
        timeoutMs: 600_000,
        env: creds ? { FLOTILLA_GIT_USERNAME: creds.username, FLOTILLA_GIT_PASSWORD: creds.password } : {},
      },
    ).catch((e) => {
      throw new FlotillaError("conflict", `push to ${remote} failed: ${redact(errText(e))}`, {
        field: "remote",
      });
    });
    // The same commit pushed to the same remote again (opening a pull request pushes first) is not news.
    const before = await this.db.query<{ pushed_to: string | null; pushed_commit: string | null }>(
      `update workspaces w set pushed_to = $2, pushed_commit = $3, pushed_at = now()
       from workspaces old where w.id = $1 and old.id = w.id returning old.pushed_to, old.pushed_commit`,
      [r.workspace_id, remote, head],
    );
    const summary = `pushed ${branch} (${short(head)}) to ${remote}`;
    if (before.rows[0]?.pushed_to !== remote || before.rows[0]?.pushed_commit !== head)
      await this.log.append(r.id, [
        { type: "git", data: { action: "push", branch, commit: head, url: remote, summary } },
      ]);
    return {
      remote,
      branch,
      commit: head,
      committed,
      forge: target?.forge.settings.name ?? null,
      message: summary,
    };
  }

  /** Pushes the branch and opens its pull request (or finds the open one), draft by default. */
  async openPullRequest(id: string, body: PullRequestBody, p: Principal): Promise<PullRequestInfo> {
    const r = await this.sessions.local(id, p);
    return this.exclusive(r, async () => {
      await this.assertQuiet(r);
      const remote = await this.remoteOf(r, body.remote);
      const target = this.forges.forRemote(remote);
      if (!target)
        throw new FlotillaError(
          "conflict",
          `no forge is configured for ${remote}: add one under forges in config.yaml to open pull requests there`,
          { field: "remote" },
        );
      const pushed = await this.pushIn(r, { remote, author: body.author }, p);
      const { forge, repo } = target;
      const base =
        body.base ??
        (r.base_ref !== "HEAD" && !/^[0-9a-f]{40}$/.test(r.base_ref)
          ? r.base_ref.replace(/^origin\//, "")
          : await forge.defaultBranch(repo).catch((e) => {
              throw forgeError(forge.settings.name, e);
            }));
      const prompt = (await this.firstPrompt(r)).trim();
      const subject =
        prompt
          .split("\n")
          .find((l) => l.trim())
          ?.trim() ?? `Flotilla session ${r.id}`;
      const info = await forge
        .openPullRequest(repo, {
          head: pushed.branch,
          base,
          title: body.title ?? (subject.length > 72 ? `${subject.slice(0, 71)}…` : subject),
          body: body.body ?? (await this.prBody(r, prompt)),
          draft: body.draft,
          labels: body.labels ?? forge.settings.labels,
        })
        .catch((e) => {
          throw forgeError(forge.settings.name, e);
        });
      const known = await this.db.query(
        "select 1 from pull_requests where workspace_id = $1 and number = $2",
        [r.workspace_id, info.number],
      );
      await this.savePullRequest(r, info);
      if (known.rowCount === 0)
        await this.log.append(r.id, [
          {
            type: "git",
            data: {
              action: "pull_request",
              branch: pushed.branch,
              commit: pushed.commit,
              into: base,
              url: info.url,
              summary: `${info.draft ? "draft " : ""}pull request #${info.number} of ${pushed.branch} into ${base}: ${info.url}`,
            },
          },
        ]);
      return info;
    });
  }

  /** The session's pull request as its forge has it now; a change of state or checks is logged as an event. */
  async pullRequest(id: string, p: Principal): Promise<PullRequestInfo> {
    const r = await this.sessions.local(id, p);
    const { rows } = await this.db.query<{
      forge: string;
      repo: string;
      number: number;
      info: PullRequestInfo;
    }>("select forge, repo, number, info from pull_requests where workspace_id = $1", [r.workspace_id]);
    const row = rows[0];
    if (!row) throw new FlotillaError("not_found", `session ${id} has no pull request`, { field: "id" });
    const forge = this.forges.byName(row.forge);
    if (!forge) throw new FlotillaError("conflict", `forge ${row.forge} is no longer configured`);
    const [owner, name] = row.repo.split("/") as [string, string];
    const info = await forge.pullRequest({ owner, name }, row.number).catch((e) => {
      throw forgeError(forge.settings.name, e);
    });
    await this.savePullRequest(r, info);
    if (
      info.state !== row.info.state ||
      info.checks.state !== row.info.checks.state ||
      info.headSha !== row.info.headSha
    )
      await this.log.append(r.id, [
        {
          type: "git",
          data: {
            action: "pull_request",
            branch: info.head,
            commit: info.headSha,
            into: info.base,
            url: info.url,
            summary: `pull request #${info.number} is ${info.state}${info.checks.state === "none" ? "" : `; checks: ${info.checks.state} (${info.checks.passed}/${info.checks.total} passed)`}`,
          },
        },
      ]);
    return info;
  }

  private async savePullRequest(r: SessionRow, info: PullRequestInfo): Promise<void> {
    await this.db.query(
      `insert into pull_requests (workspace_id, session_id, forge, repo, number, url, info) values ($1, $2, $3, $4, $5, $6, $7)
       on conflict (workspace_id) do update set forge = $3, repo = $4, number = $5, url = $6, info = $7, updated_at = now()`,
      [r.workspace_id, r.id, info.forge, info.repo, info.number, info.url, JSON.stringify(info)],
    );
  }

  private async prBody(r: SessionRow, prompt: string): Promise<string> {
    const diff = await workspaceDiff(this.sessions.git(r), r.path, r.base_commit);
    const files = diff.files
      .slice(0, 50)
      .map((f) => `| \`${f.path}\` | ${f.status} | +${f.additions} −${f.deletions} |`);
    const link = `${(this.config.publicUrl ?? `http://${this.config.host}:${this.config.port}`).replace(/\/+$/, "")}/s/${r.id}`;
    return [
      prompt ? `> ${prompt.slice(0, 4000).split("\n").join("\n> ")}` : "",
      `**${diff.files.length} file${diff.files.length === 1 ? "" : "s"} changed**, +${diff.additions} −${diff.deletions}`,
      files.length > 0 ? ["| file | | |", "| --- | --- | --- |", ...files].join("\n") : "",
      `Made by a Flotilla agent in session [${r.id}](${link}).`,
    ]
      .filter(Boolean)
      .join("\n\n");
  }

  /** Where a push goes: a URL as given, a remote of the user's repository by name, else the default. */
  private async remoteOf(r: SessionRow, remote: string | undefined): Promise<string> {
    if (remote && (isGitUrl(remote) || remote.startsWith("/"))) return remote;
    if (!remote && isGitUrl(r.repo)) return r.repo;
    if (isGitUrl(r.repo))
      throw new FlotillaError("invalid_request", `a remote name needs a local repository; give a URL`, {
        field: "remote",
      });
    const name = remote ?? "origin";
    // No such remote: refused just below, naming it.
    const url = await hostGit(["remote", "get-url", name], { cwd: r.repo }).catch(() => undefined);
    if (!url)
      throw new FlotillaError(
        remote ? "invalid_request" : "conflict",
        `${r.repo} has no remote ${JSON.stringify(name)}: name one, or give a URL`,
        { field: "remote" },
      );
    return url.stdout.trim();
  }

  /** The control plane's own bare repository for a remote, where pushes are made from. */
  private mirrorOf(remote: string): string {
    const dir = join(
      this.config.home,
      "git",
      "mirrors",
      `${createHash("sha256").update(remote).digest("hex").slice(0, 24)}.git`,
    );
    if (!existsSync(join(dir, "HEAD"))) {
      mkdirSync(dir, { recursive: true });
      execFileSync("git", ["init", "--quiet", "--bare", dir]);
    }
    return dir;
  }

  // ---- helpers -------------------------------------------------------------------------------

  private async recordMerge(
    r: SessionRow,
    into: string,
    commit: string | null,
    data: { action: "merge" | "patch"; branch: string; commit?: string; into: string; summary: string },
  ): Promise<void> {
    if (commit)
      await this.db.query(
        "update workspaces set merged_into = $2, merged_commit = $3, merged_at = now() where id = $1",
        [r.workspace_id, into, commit],
      );
    await this.log.append(r.id, [{ type: "git", data }]);
  }

  private branchOf(r: SessionRow): string {
    if (!r.branch) throw new FlotillaError("conflict", "this session's workspace has no branch of its own");
    return r.branch;
  }

  private async commits(r: SessionRow, branch: string): Promise<CommitInfo[]> {
    const { stdout } = await this.git(r, [
      "log",
      "--max-count=200",
      `--format=${LOG_FORMAT}`,
      `${r.base_commit}..refs/heads/${branch}`,
    ]);
    return parseLog(stdout);
  }

  /** Nothing lands while any session of the workspace (a fork shares it) is working. */
  private async assertQuiet(r: SessionRow): Promise<void> {
    const { rows } = await this.db.query<{ id: string; status: string }>(
      `select id, status from sessions where workspace_id = $1 and deleted_at is null and status in ${WORKING_SQL}`,
      [r.workspace_id],
    );
    if (rows[0])
      throw new FlotillaError(
        "session_busy",
        `session ${rows[0].id} is ${rows[0].status.replace("_", " ")} in this workspace: wait for its turn to end`,
      );
  }

  private async exclusive<T>(r: SessionRow, fn: () => Promise<T>): Promise<T> {
    if (this.busy.has(r.workspace_id))
      throw new FlotillaError("session_busy", "another commit or merge of this workspace is under way");
    this.busy.add(r.workspace_id);
    try {
      return await fn();
    } finally {
      this.busy.delete(r.workspace_id);
    }
  }

  /** The branch a merge goes into by default: the one checked out in the user's repository. */
  private async defaultTarget(r: SessionRow): Promise<string | null> {
    if (isGitUrl(r.repo)) return null;
    const { stdout } = await hostGit(["symbolic-ref", "-q", "--short", "HEAD"], { cwd: r.repo }).catch(
      () => ({
        stdout: "",
      }),
    );
    return stdout.trim() || null;
  }

  /**
   * Who a commit is by when the request names nobody: the person whose repository it is (its git
   * identity, local or global), else the token that asks.
   */
  private async defaultAuthor(r: SessionRow, p: Principal): Promise<GitIdentity> {
    const cwd = isGitUrl(r.repo) ? undefined : r.repo;
    const get = (key: string) =>
      hostGit(["config", "--get", key], { cwd }).then(
        (x) => x.stdout.trim(),
        () => "",
      );
    const [name, email] = await Promise.all([get("user.name"), get("user.email")]);
    if (name && email) return { name, email };
    const { rows } = await this.db.query<{ name: string }>("select name from tokens where id = $1", [
      p.tokenId,
    ]);
    const who = rows[0]?.name ?? "flotilla";
    return { name: name || who, email: email || `${who.replace(/[^\w.-]+/g, "-")}@flotilla.invalid` };
  }

  /** The default message: the session's first prompt, then what the commit changes. */
  private async draft(r: SessionRow, files: { path: string; status?: string }[]): Promise<string> {
    const prompt = await this.firstPrompt(r);
    const lines = prompt.split("\n").map((l) => l.trimEnd());
    const first = lines.find((l) => l.trim() !== "")?.trim() ?? "";
    const subject = first
      ? first.length > 72
        ? `${first.slice(0, 71).trimEnd()}…`
        : first
      : `Work from Flotilla session ${r.id}`;
    const parts = [subject];
    const rest = prompt.trim();
    if (rest && rest !== subject) parts.push(rest.length > 2000 ? `${rest.slice(0, 2000)}…` : rest);
    if (files.length > 0) {
      const shown = files.slice(0, 20).map((f) => `  ${f.status ? `${f.status.padEnd(9)}` : ""}${f.path}`);
      if (files.length > 20) shown.push(`  … and ${files.length - 20} more`);
      parts.push(`Changes (${files.length} file${files.length === 1 ? "" : "s"}):\n${shown.join("\n")}`);
    }
    parts.push(`Flotilla session: ${r.id}`);
    return `${parts.join("\n\n")}\n`;
  }

  private async squashMessage(r: SessionRow, commits: CommitInfo[]): Promise<string> {
    const prompt = (await this.firstPrompt(r))
      .split("\n")
      .find((l) => l.trim())
      ?.trim();
    const subject = prompt
      ? prompt.length > 72
        ? `${prompt.slice(0, 71)}…`
        : prompt
      : `Flotilla session ${r.id}`;
    const list = [...commits].reverse().map((c) => `* ${c.subject}`);
    return `${subject}\n\n${list.join("\n")}\n\nFlotilla session: ${r.id}\n`;
  }

  private async firstPrompt(r: SessionRow): Promise<string> {
    const { rows } = await this.db.query<{ data: { prompt?: string } }>(
      "select data from events where session_id = $1 and type = 'turn.started' order by seq limit 1",
      [r.id],
    );
    return rows[0]?.data.prompt ?? (r.turn?.phase === "pending" ? r.turn.prompt : "");
  }

  /** git in the workspace, through the driver; throws on a non-zero exit. */
  private async git(r: SessionRow, args: string[], env?: Record<string, string>, stdin?: string) {
    const res = await this.run(r, args, [0], env, stdin);
    return res;
  }

  private async run(
    r: SessionRow,
    args: string[],
    ok: number[],
    env?: Record<string, string>,
    stdin?: string,
  ): Promise<ExecResult> {
    const res = await this.sessions.exec(r, {
      command: ["git", ...args],
      env: { GIT_PAGER: "cat", LC_ALL: "C", ...env },
      timeoutMs: 120_000,
      maxOutputBytes: 64 * 1024 * 1024,
      stdin,
    });
    if (res.exitCode === null || !ok.includes(res.exitCode)) {
      const tail = res.stderr.trim().split("\n").slice(-3).join(" ");
      throw new FlotillaError(
        "conflict",
        `git ${args.find((a) => !a.startsWith("-") && !a.includes("="))} failed in the workspace: ${tail || `exit ${res.exitCode ?? res.signal}`}`,
      );
    }
    return res;
  }
}

function identityEnv(who: GitIdentity): Record<string, string> {
  return {
    GIT_AUTHOR_NAME: who.name,
    GIT_AUTHOR_EMAIL: who.email,
    GIT_COMMITTER_NAME: who.name,
    GIT_COMMITTER_EMAIL: who.email,
  };
}

async function commitTree(
  repo: string,
  tree: string,
  parents: string[],
  message: string,
  author: GitIdentity,
): Promise<string> {
  return new Promise((ok, fail) => {
    const child = execFile(
      "git",
      ["commit-tree", tree, ...parents.flatMap((p) => ["-p", p]), "-F", "-"],
      { cwd: repo, env: { ...process.env, ...identityEnv(author), GIT_TERMINAL_PROMPT: "0", LC_ALL: "C" } },
      (err, stdout) => (err ? fail(err) : ok(stdout.trim())),
    );
    child.stdin?.end(message);
  });
}

/** A conflict to hand to the agent (merge with `resolve`), carried out of the merge attempt. */
class Resolve extends Error {
  constructor(
    readonly conflict: FlotillaError,
    readonly committed: CommitResult | null,
  ) {
    super(conflict.message);
  }
}

/** A checked-out target must have no uncommitted changes to tracked files for a merge to move it. */
async function assertClean(checkout: string, into: string): Promise<void> {
  const dirty = (
    await hostGit(["status", "--porcelain", "-z", "--untracked-files=no"], { cwd: checkout })
  ).stdout
    .split("\0")
    .filter(Boolean)
    .map((l) => l.slice(3));
  if (dirty.length > 0)
    throw new FlotillaError(
      "worktree_dirty",
      `${into} is checked out in ${checkout} with uncommitted changes (${dirty.join(", ")}); commit or stash them, or apply the session as a patch instead`,
      { field: "into", details: { files: dirty, path: checkout } },
    );
}

/** The working tree that has `branch` checked out: the repository's own or one of its worktrees. */
async function checkedOutAt(repo: string, branch: string): Promise<string | null> {
  const bare = (await hostGit(["rev-parse", "--is-bare-repository"], { cwd: repo })).stdout.trim() === "true";
  const { stdout } = await hostGit(["worktree", "list", "--porcelain"], { cwd: repo });
  let path: string | null = null;
  for (const line of stdout.split("\n")) {
    if (line.startsWith("worktree ")) path = line.slice(9);
    else if (line === `branch refs/heads/${branch}` && path && !(bare && resolve(path) === resolve(repo)))
      return path;
  }
  return null;
}

/** A forge's refusal, with its status and message (never its request, which carries the token). */
function forgeError(forge: string, e: unknown): FlotillaError {
  // Octokit throws errors with a status; gitea-js throws the response, its parsed body in `error`.
  const err = e as { status?: number; message?: string; statusText?: string; error?: { message?: string } };
  const status = err.status ?? 0;
  const said = err.error?.message ?? err.message ?? err.statusText ?? String(e);
  return new FlotillaError(
    status === 401 || status === 403
      ? "forbidden"
      : status === 404
        ? "not_found"
        : status === 422
          ? "conflict"
          : "forge_error",
    `${forge} refused: ${said}${status ? ` (HTTP ${status})` : ""}`,
    { details: { forge, status } },
  );
}

function errText(e: unknown): string {
  const err = e as { stderr?: string; message?: string };
  return (err.stderr || err.message || String(e)).trim().split("\n").slice(-3).join(" ");
}
