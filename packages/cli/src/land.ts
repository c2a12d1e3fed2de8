import { execFileSync } from "node:child_process";
import { homedir } from "node:os";
import {
  type BranchState,
  type CommitResult,
  type FlotillaClient,
  FlotillaError,
  type GcResult,
  type MergeResult,
  type PullRequestInfo,
  type PushResult,
} from "@flotilla/client";
import type { GitIdentity } from "@flotilla/contracts";
import { type Command, InvalidArgumentError, Option } from "commander";
import { action, CliError, connect, EXIT } from "./connection.ts";
import { age, firstLine, plural, table, truncate } from "./format.ts";
import { type Style, styleFor } from "./style.ts";

const print = (text: string) => process.stdout.write(`${text}\n`);
const printJson = (v: unknown) => print(JSON.stringify(v, null, 2));
const short = (sha: string) => sha.slice(0, 7);
const home = homedir();
const tildify = (p: string) => (p.startsWith(`${home}/`) ? `~${p.slice(home.length)}` : p);
/** At most this many files are listed in a refusal; the rest are counted. */
const MAX_FILES = 20;

// The same shape the server accepts (contracts' GitIdentity).
const NAME = /^[^<>\n]+$/;
const EMAIL = /^[^<>\s@]+@[^<>\s@]+$/;

/** `--author "Ada Lovelace <ada@example.com>"`, as git writes it. */
export function authorArg(v: string): GitIdentity {
  const m = /^\s*([^<>]+?)\s*<\s*([^<>\s]+)\s*>\s*$/.exec(v);
  if (!m || !NAME.test(m[1]!) || !EMAIL.test(m[2]!))
    throw new InvalidArgumentError('expected "Name <email>", e.g. "Ada Lovelace <ada@example.com>"');
  return { name: m[1]!, email: m[2]! };
}

function gitConfig(key: string): string | undefined {
  try {
    const v = execFileSync("git", ["config", "--get", key], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 5000,
    }).trim();
    return v || undefined;
  } catch {
    return undefined; // not set, or no git at all
  }
}

/**
 * Who a commit is by: --author, else the person's own git identity (as `git commit` here would
 * use it), else nobody, and the server decides.
 */
export function authorFor(flag: GitIdentity | undefined): GitIdentity | undefined {
  if (flag) return flag;
  const name = gitConfig("user.name");
  const email = gitConfig("user.email");
  if (!name || !email || !NAME.test(name) || !EMAIL.test(email)) return undefined;
  return { name, email };
}

/** A refusal the user can act on: one line, the files it is about, and what to do instead. */
function refuse(code: string, line: string, files: string[], hint: string): number {
  const s = styleFor(process.stderr);
  const out = (l: string) => process.stderr.write(`${l}\n`);
  out(`${s.red(`error ${code}`)}: ${line}`);
  for (const f of files.slice(0, MAX_FILES)) out(`  ${f}`);
  if (files.length > MAX_FILES) out(s.dim(`  … ${files.length - MAX_FILES} more`));
  out(s.dim(hint));
  return EXIT.failed;
}

const filesOf = (details: unknown): string[] => {
  const files = (details as { files?: unknown } | undefined)?.files;
  return Array.isArray(files) ? files.filter((f): f is string => typeof f === "string") : [];
};

const busyHint = (id: string) =>
  `the agent is working in ${id}: wait for its turn to end (flotilla logs ${id} --follow) or stop it (flotilla abort ${id})`;

/** The refusals of commit and merge that have a better answer than the server's one line. */
function landingError(e: unknown, id: string, o: { branch?: BranchState; patch?: boolean } = {}): number {
  const { branch } = o;
  if (!(e instanceof FlotillaError)) throw e;
  switch (e.code) {
    case "nothing_to_commit": {
      const landed = branch?.commits.length
        ? `${plural(branch.commits.length, "commit")} on ${branch.branch} already; flotilla merge ${id} lands them`
        : `the agent has not changed any file (flotilla diff ${id})`;
      return refuse(e.code, e.message, [], landed);
    }
    case "session_busy":
      return refuse(e.code, e.message, [], busyHint(id));
    case "merge_conflict": {
      const into = (e.details as { into?: unknown } | undefined)?.into;
      const target = typeof into === "string" ? into : "the target branch";
      const files = filesOf(e.details);
      if (o.patch)
        return refuse(
          e.code,
          files.length ? `${id}'s changes do not apply to your working tree in:` : e.message,
          files,
          `nothing was changed; resolve them in the session (flotilla send ${id} "merge ${target} and resolve the conflicts"), then merge again`,
        );
      return refuse(
        e.code,
        `${id} conflicts with ${target} in:`,
        files,
        `resolve them in the session (flotilla send ${id} "merge ${target} and resolve the conflicts") or apply as a patch: flotilla merge ${id} --patch`,
      );
    }
    case "worktree_dirty": {
      const files = filesOf(e.details);
      const path = (e.details as { path?: unknown } | undefined)?.path;
      return refuse(
        e.code,
        files.length && typeof path === "string"
          ? `your working tree at ${tildify(path)} has uncommitted changes in:`
          : e.message,
        files,
        `commit or stash them first, or apply the session's changes as a patch (works on a dirty tree): flotilla merge ${id} --patch`,
      );
    }
    default:
      throw e;
  }
}

export const committedLine = (c: CommitResult, s: Style): string =>
  `${s.green("✓")} committed ${s.bold(short(c.commit.sha))} on ${c.branch}: ${c.commit.subject} ${s.dim(`(${plural(c.files, "file")})`)}`;

/** A pull request's checks: `success 3/3`, `failure 1 of 3 failed`, `pending 2/3 passed, 1 pending`, `none`. */
export function checksText(c: PullRequestInfo["checks"], s: Style): string {
  switch (c.state) {
    case "success":
      return s.green(`success ${c.passed}/${c.total}`);
    case "failure":
      return s.red(`failure ${c.failed} of ${c.total} failed`);
    case "pending":
      return s.yellow(`pending ${c.passed}/${c.total} passed, ${c.pending} pending`);
    default:
      return s.dim("none");
  }
}

const prState = (pr: PullRequestInfo, s: Style): string => {
  const state =
    pr.state === "open" ? s.green("open") : pr.state === "merged" ? s.magenta("merged") : s.red("closed");
  return pr.draft && pr.state === "open" ? `${state}, draft` : state;
};

function prLines(pr: PullRequestInfo, s: Style): string[] {
  const row = (k: string, v: string) => `  ${s.dim(`${k}:`.padEnd(7))} ${v}`;
  return [
    `${s.bold(`#${pr.number}`)} ${pr.title}  ${s.dim(`${pr.repo} on ${pr.forge}`)}`,
    row("url", pr.url),
    row("state", prState(pr, s)),
    row("branch", `${pr.head} → ${pr.base} ${s.dim(`at ${short(pr.headSha)}`)}`),
    row("checks", checksText(pr.checks, s)),
    s.dim(`  updated ${age(pr.updatedAt)} ago`),
  ];
}

function branchLines(b: BranchState, id: string, s: Style): string[] {
  const row = (k: string, v: string) => `  ${s.dim(k.padEnd(12))}  ${v}`;
  const lines = [`${s.bold(b.branch)}  ${s.dim(`base ${short(b.baseCommit)} · head ${short(b.head)}`)}`];
  lines.push(row("commits", b.commits.length ? `${b.commits.length} since base` : s.dim("none since base")));
  if (b.commits.length) {
    const width = Math.max(30, (process.stdout.columns ?? 100) - 40);
    for (const c of b.commits)
      lines.push(
        `    ${s.yellow(short(c.sha))} ${truncate(c.subject, width)}  ${s.dim(`${c.author.name}, ${age(c.at)} ago`)}`,
      );
  }
  lines.push(
    row(
      "uncommitted",
      b.uncommitted
        ? `${plural(b.uncommitted, "file")} ${s.dim(`(would commit as: ${truncate(firstLine(b.draftMessage), 60)})`)}`
        : s.dim("nothing"),
    ),
  );
  lines.push(
    row(
      "merge into",
      b.local
        ? (b.target ?? s.dim("— (the repository has no branch checked out: pass --into)"))
        : s.dim("— (the repository is not a local directory: merge and patch need one)"),
    ),
  );
  lines.push(
    row(
      "last merge",
      b.merged
        ? `into ${b.merged.into} at ${short(b.merged.commit)} ${s.dim(`(${age(b.merged.at)} ago)`)}`
        : s.dim("never"),
    ),
  );
  lines.push(
    row(
      "push to",
      b.remote
        ? `${b.remote.url} ${s.dim(b.remote.forge ? `(${b.remote.forge})` : "(no forge configured for it: push only, no pull requests)")}`
        : s.dim("— (the repository has no remote: pass --remote to push)"),
    ),
  );
  lines.push(
    row(
      "last push",
      b.pushed
        ? `${short(b.pushed.commit)} to ${b.pushed.to} ${s.dim(`(${age(b.pushed.at)} ago)`)}${b.pushed.commit !== b.head ? s.yellow(" (the branch has moved since)") : ""}`
        : s.dim("never"),
    ),
  );
  const pr = b.pullRequest;
  lines.push(
    row(
      "pull request",
      pr
        ? `#${pr.number} ${prState(pr, s)} · checks ${checksText(pr.checks, s)} · ${pr.url} ${s.dim(`(as last read: flotilla pr ${id} reads it again)`)}`
        : s.dim("none"),
    ),
  );
  if (b.uncommitted || b.commits.length) {
    const next = b.uncommitted ? `flotilla commit ${id} -m "…"` : undefined;
    const merge = b.local ? `flotilla merge ${id}` : undefined;
    // Landing on the forge: open the pull request, or push what it does not have yet.
    const behind = !b.pushed || b.pushed.commit !== b.head || b.uncommitted > 0;
    const land =
      b.remote?.forge && !pr
        ? `flotilla pr ${id} --create`
        : b.remote && behind
          ? `flotilla push ${id}`
          : undefined;
    const hint = [next, merge, land].filter(Boolean).join("  |  ");
    if (hint) lines.push(s.dim(`  next: ${hint}`));
  }
  return lines;
}

function mergeLines(r: MergeResult, s: Style): string[] {
  const lines: string[] = [];
  if (r.committed) lines.push(committedLine(r.committed, s));
  const mark = r.result === "up-to-date" ? s.dim("·") : r.result === "resolving" ? s.dim("→") : s.green("✓");
  lines.push(`${mark} ${r.message}`);
  // Whether the user's own files changed is what matters most after a merge: said plainly, unless
  // the server's message already does.
  if (r.worktree === "updated" && !/working tree/.test(r.message))
    lines.push(`  your working tree was updated (${r.into} is checked out there)`);
  else if (r.worktree === "patched")
    lines.push("  your working tree was patched: the changes are not committed (review them with git diff)");
  return lines;
}

function gcLines(r: GcResult, s: Style): string[] {
  const rows = r.items.map((x) => [
    x.kind,
    x.kind === "branch"
      ? `${x.repo ? `${tildify(x.repo)}:` : ""}${x.path.replace(/^refs\/heads\//, "")}`
      : tildify(x.path),
    s.dim(x.detail),
  ]);
  return [table(["KIND", "PATH / BRANCH", "DETAIL"], rows, s)];
}

const COMMIT_HELP = `
The commit is on the session's branch, in its workspace: your own checkout is not touched (that is
what \`flotilla merge\` does). Author: --author, else your git identity (\`git config user.name\` and
\`user.email\` here), else the server's choice; the agent is credited with a Co-authored-by trailer.
Without -m the server writes the message from the session (see it in \`flotilla branch <session>\`).
Exit code: 0 committed, 1 refused (nothing to commit, the agent is still working).`;

const MERGE_HELP = `
Lands the session's branch in your local repository: uncommitted changes in the workspace are
committed first (-m and --author apply to that commit and to a merge or squash commit), then the
branch is merged into --into (default: the branch checked out there). If that branch is checked out
and its working tree is clean, the working tree is updated too. --patch instead applies the
changes to your working tree as uncommitted edits. On conflicts the target is not changed: the conflicting files are listed. Exit code: 0 landed or already up to
date, 1 refused (conflicts, a dirty working tree, the agent is still working).`;

const PUSH_HELP = `
Pushes the session's branch (flotilla/<session>; uncommitted changes in the workspace are committed
first, as \`flotilla commit\` would) to --remote: a git URL or the name of a remote of your local
repository (default: the session's repository if it is a URL, else its origin). The control plane
pushes with the credentials of the forge configured for that host; the agent never sees them. The
branch on the remote is Flotilla's own and is overwritten. Exit code: 0 pushed, 1 refused (nothing
to push, no remote, the agent is still working).`;

const PR_HELP = `
Without --create: the session's pull request as its forge has it now (state, draft, checks); exit 1
if it has none. With --create: pushes the branch (committing what is uncommitted) and opens a pull
request on the forge configured for the remote, a draft unless --ready, titled and described from
the session unless --title; if one is open already it is returned as it is (the push still updates
it). Exit code: 0 shown or opened, 1 none or refused.`;

const GC_HELP = `
Leftovers: workspaces whose sessions are all deleted but whose checkout was kept, checkouts on disk
that no workspace owns, and flotilla/* branches in your repositories that no live workspace owns.
Without --yes nothing is removed. Both need an admin token.`;

export function registerLand(program: Command): void {
  program
    .command("commit")
    .description("Commit a session's workspace changes on its branch (flotilla/<session>)")
    .argument("<session>", "session id")
    .option("-m, --message <msg>", "commit message (default: written by the server from the session)")
    .option(
      "--author <identity>",
      'who the commit is by, "Name <email>" (default: your git identity)',
      authorArg,
    )
    .option("--json", "print the CommitResult as JSON")
    .addHelpText("after", COMMIT_HELP)
    .action(
      action(
        async (
          id: string,
          flags: { message?: string; author?: GitIdentity; json?: boolean },
          cmd: Command,
        ) => {
          const { client } = connect(cmd);
          // Without a message the server writes one; asking for the branch first also says early
          // when the session has no workspace to commit in.
          const branch = flags.message === undefined ? await client.sessions.branch(id) : undefined;
          const author = authorFor(flags.author);
          let result: CommitResult;
          try {
            result = await client.sessions.commit(id, {
              ...(flags.message !== undefined ? { message: flags.message } : {}),
              ...(author ? { author } : {}),
            });
          } catch (e) {
            const known =
              branch ?? (isCode(e, "nothing_to_commit") ? await branchOrNothing(client, id) : undefined);
            return landingError(e, id, { branch: known });
          }
          if (flags.json) return void printJson(result);
          const s = styleFor(process.stdout);
          print(committedLine(result, s));
          return 0;
        },
      ),
    );

  program
    .command("merge")
    .description("Merge a session's branch into your local repository (or apply it there as a patch)")
    .argument("<session>", "session id")
    .option("--into <branch>", "branch of your repository (default: its checked-out branch)")
    .option("--squash", "one commit on the target instead of the branch's commits")
    .addOption(
      new Option(
        "--patch",
        "apply the changes to your working tree, uncommitted (works on a dirty tree)",
      ).conflicts("squash"),
    )
    .addOption(
      new Option(
        "--resolve",
        "on a conflict, hand it to the agent: it merges your branch and resolves it (merge again after its turn)",
      ).conflicts("patch"),
    )
    .option("-m, --message <msg>", "message of the merge or squash commit (and of a commit made first)")
    .option(
      "--author <identity>",
      'who those commits are by, "Name <email>" (default: your git identity)',
      authorArg,
    )
    .option("--json", "print the MergeResult as JSON")
    .addHelpText("after", MERGE_HELP)
    .action(
      action(
        async (
          id: string,
          flags: {
            into?: string;
            squash?: boolean;
            patch?: boolean;
            resolve?: boolean;
            message?: string;
            author?: GitIdentity;
            json?: boolean;
          },
          cmd: Command,
        ) => {
          const { client } = connect(cmd);
          const author = authorFor(flags.author);
          let result: MergeResult;
          try {
            result = await client.sessions.merge(id, {
              ...(flags.into ? { into: flags.into } : {}),
              ...(flags.squash ? { squash: true } : {}),
              ...(flags.patch ? { patch: true } : {}),
              ...(flags.resolve ? { resolve: true } : {}),
              ...(flags.message !== undefined ? { message: flags.message } : {}),
              ...(author ? { author } : {}),
            });
          } catch (e) {
            return landingError(e, id, { patch: flags.patch });
          }
          if (flags.json) return void printJson(result);
          print(mergeLines(result, styleFor(process.stdout)).join("\n"));
          return 0;
        },
      ),
    );

  program
    .command("branch")
    .description("A session's branch: commits since its base, what is not committed, where it merges")
    .argument("<session>", "session id")
    .option("--json", "print the BranchState as JSON")
    .action(
      action(async (id: string, flags: { json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const b = await client.sessions.branch(id);
        if (flags.json) return void printJson(b);
        print(branchLines(b, id, styleFor(process.stdout)).join("\n"));
        return 0;
      }),
    );

  program
    .command("push")
    .description("Push a session's branch to its remote (uncommitted changes are committed first)")
    .argument("<session>", "session id")
    .option(
      "--remote <url|name>",
      "a git URL or a remote of your repository (default: the session's repository or its origin)",
    )
    .option("--json", "print the PushResult as JSON")
    .addHelpText("after", PUSH_HELP)
    .action(
      action(async (id: string, flags: { remote?: string; json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        let r: PushResult;
        try {
          const author = authorFor(undefined);
          r = await client.sessions.push(id, {
            ...(flags.remote ? { remote: flags.remote } : {}),
            ...(author ? { author } : {}),
          });
        } catch (e) {
          return landingError(e, id);
        }
        if (flags.json) return void printJson(r);
        const s = styleFor(process.stdout);
        if (r.committed) print(committedLine(r.committed, s));
        print(`${s.green("✓")} ${r.message}`);
        // What the push means for review: the open pull request it updated, or how to open one.
        const pr = r.forge ? (await branchOrNothing(client, id))?.pullRequest : undefined;
        if (pr?.state === "open") print(`  updated pull request #${pr.number}: ${pr.url}`);
        else if (r.forge) print(s.dim(`  open a pull request: flotilla pr ${id} --create`));
        return 0;
      }),
    );

  program
    .command("pr")
    .description("A session's pull request (state, checks); --create pushes its branch and opens one")
    .argument("<session>", "session id")
    .option("--create", "push the branch and open the pull request (or find the open one)")
    .option("--ready", "with --create: ready for review, not a draft")
    .option("--base <branch>", "with --create: the branch to merge into (default: the session's base branch)")
    .option("--title <title>", "with --create: the title (default: from the session's first prompt)")
    .option("--label <label>", "with --create: a label (repeat for more)", collectString)
    .option("--remote <url|name>", "with --create: where to push (as for flotilla push)")
    .option("--json", "print the PullRequestInfo as JSON")
    .addHelpText("after", PR_HELP)
    .action(
      action(
        async (
          id: string,
          flags: {
            create?: boolean;
            ready?: boolean;
            base?: string;
            title?: string;
            label?: string[];
            remote?: string;
            json?: boolean;
          },
          cmd: Command,
        ) => {
          const { client } = connect(cmd);
          const s = styleFor(process.stdout);
          if (!flags.create) {
            const only = (["ready", "base", "title", "label", "remote"] as const).filter((k) => flags[k]);
            if (only.length)
              throw new CliError(
                "invalid_request",
                `${only.map((k) => `--${k}`).join(", ")} only ${only.length === 1 ? "applies" : "apply"} with --create`,
              );
            let pr: PullRequestInfo;
            try {
              pr = await client.sessions.pullRequest(id);
            } catch (e) {
              if (!isCode(e, "not_found")) throw e;
              await client.sessions.get(id); // a session that does not exist says so itself
              return refuse(
                "not_found",
                `${id} has no pull request`,
                [],
                `open one: flotilla pr ${id} --create`,
              );
            }
            if (flags.json) return void printJson(pr);
            print(prLines(pr, s).join("\n"));
            return 0;
          }
          // What was there before tells an opened pull request from one that was open already.
          const before = (await branchOrNothing(client, id))?.pullRequest;
          let pr: PullRequestInfo;
          try {
            pr = await client.sessions.openPullRequest(id, {
              draft: !flags.ready,
              ...(flags.base ? { base: flags.base } : {}),
              ...(flags.title ? { title: flags.title } : {}),
              ...(flags.label?.length ? { labels: flags.label } : {}),
              ...(flags.remote ? { remote: flags.remote } : {}),
              ...(authorFor(undefined) ? { author: authorFor(undefined) } : {}),
            });
          } catch (e) {
            return landingError(e, id);
          }
          if (flags.json) return void printJson(pr);
          const existed = before?.state === "open" && before.number === pr.number;
          const kind = `${pr.draft ? "draft " : ""}pull request #${pr.number} of ${pr.head} into ${pr.base}`;
          if (existed) {
            const asked = flags.ready || flags.base || flags.title || flags.label?.length;
            print(
              `${s.dim("·")} ${kind} was open already; the branch is pushed to it${asked ? s.yellow(" (--ready, --base, --title and --label do not change an open pull request)") : ""}`,
            );
          } else print(`${s.green("✓")} opened ${kind}`);
          print(pr.url);
          return 0;
        },
      ),
    );

  program
    .command("gc")
    .description("List the checkouts and branches no live session owns; --yes removes them (admin)")
    .option("--yes", "remove them")
    .option("--json", "print the GcResult as JSON")
    .addHelpText("after", GC_HELP)
    .action(
      action(async (flags: { yes?: boolean; json?: boolean }, cmd: Command) => {
        const { client } = connect(cmd);
        const r = await client.gc({ remove: Boolean(flags.yes) });
        if (flags.json) return void printJson(r);
        const s = styleFor(process.stdout);
        if (!r.items.length) return void print(s.dim("nothing to clean up"));
        print(gcLines(r, s).join("\n"));
        if (!flags.yes)
          print(s.dim(`run flotilla gc --yes to remove ${r.items.length === 1 ? "it" : "them"}`));
        else {
          const kept = r.items.length - r.removed;
          print(
            `${s.green("✓")} removed ${plural(r.removed, "leftover")}${kept ? s.yellow(` (${kept} could not be removed)`) : ""}`,
          );
        }
        // --yes that removed less than it found did not do what was asked.
        return flags.yes && r.removed < r.items.length ? EXIT.failed : EXIT.ok;
      }),
    );
}

const collectString = (v: string, acc: string[] = []): string[] => [...acc, v];

const isCode = (e: unknown, code: string): boolean => e instanceof FlotillaError && e.code === code;

async function branchOrNothing(client: FlotillaClient, id: string): Promise<BranchState | undefined> {
  try {
    return await client.sessions.branch(id);
  } catch {
    return undefined;
  }
}
