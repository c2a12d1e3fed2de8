import type { BranchState, MergeBody, PullRequestBody, PullRequestInfo } from "@flotilla/client";
import type { SessionStatus } from "@flotilla/contracts/transcript";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { type ReactNode, useEffect, useState } from "react";
import { api } from "../api.ts";
import { Button, Dialog, ErrorNote, inputClass, timeAgo } from "../ui.tsx";
import { isBusy, PullRequestChecks, PullRequestState, useBranch, useRefreshBranch } from "./branch.tsx";

const short = (sha: string) => sha.slice(0, 7);
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** The code and file list of an API error (merge_conflict and worktree_dirty carry `details.files`). */
function apiError(e: unknown): { code?: string; files: string[]; into?: string; path?: string } {
  const err = e as { code?: unknown; details?: { files?: unknown; into?: unknown; path?: unknown } } | null;
  const files = Array.isArray(err?.details?.files)
    ? err.details.files.filter((f): f is string => typeof f === "string")
    : [];
  return {
    code: typeof err?.code === "string" ? err.code : undefined,
    files,
    into: typeof err?.details?.into === "string" ? err.details.into : undefined,
    path: typeof err?.details?.path === "string" ? err.details.path : undefined,
  };
}

/** The server appends the co-author trailer itself: the editable message never carries it. */
const withoutTrailer = (message: string) => message.replace(/(\n+Co-authored-by:[^\n]*)+\s*$/i, "").trimEnd();

type Outcome = { text: string; sha?: string };

/**
 * Landing the session's work: its branch (commits since the base, what is not committed yet), a
 * commit of the workspace's changes, a merge (or patch) into the user's own repository, a push to
 * its remote and a pull request on its forge. Re-reads the branch and the diff after each action;
 * the session's layout re-reads them when a `git` event arrives and when a turn ends.
 */
export function LandPanel({ sessionId, status }: { sessionId: string; status: SessionStatus | undefined }) {
  const qc = useQueryClient();
  const branch = useBranch(sessionId);
  const refresh = useRefreshBranch(sessionId);
  const [dialog, setDialog] = useState<"commit" | "merge" | "pr" | null>(null);
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const done = (o: Outcome) => {
    setDialog(null);
    setOutcome(o);
    refresh();
  };
  const push = useMutation({
    mutationFn: () => api.sessions.push(sessionId),
    onSuccess: (r) => {
      setOutcome({
        text: r.committed
          ? `Committed ${short(r.committed.commit.sha)} (${plural(r.committed.files, "file")}), then ${r.message}`
          : r.message,
        sha: r.commit,
      });
      refresh();
    },
  });
  // The pull request as its forge has it now: shown at once; if its state or checks changed, the
  // server logs a `git` event, which re-reads the branch here and in every other tab.
  const readPr = useMutation({
    mutationFn: () => api.sessions.pullRequest(sessionId),
    onSuccess: (pr) => {
      qc.setQueryData<BranchState>(["branch", sessionId], (old) => (old ? { ...old, pullRequest: pr } : old));
    },
  });

  if (branch.error)
    return (
      <section aria-label="Branch" className="grid gap-2">
        <ErrorNote error={branch.error} />
      </section>
    );
  const b = branch.data;
  if (!b)
    return (
      <section
        aria-label="Branch"
        className="rounded-lg border border-stone-200 bg-white p-4 text-sm text-stone-500 dark:border-stone-800 dark:bg-stone-900"
      >
        Loading the branch…
      </section>
    );
  const busy = isBusy(status);
  const nothing = b.uncommitted === 0 && b.commits.length === 0;
  const target = b.target ?? "";
  const pr = b.pullRequest;
  const upToDate = !!b.pushed && b.pushed.commit === b.head && b.uncommitted === 0;
  return (
    <section
      aria-label="Branch"
      data-testid="land-panel"
      className="grid grid-cols-[minmax(0,1fr)] gap-3 rounded-lg border border-stone-200 bg-white p-4 dark:border-stone-800 dark:bg-stone-900"
    >
      <div className="flex flex-wrap items-start gap-3">
        <div className="min-w-0 flex-1 basis-64">
          <h2 className="flex min-w-0 items-baseline gap-2">
            <span className="text-xs font-medium uppercase tracking-wide text-stone-500">Branch</span>
            <span
              data-testid="branch-name"
              title={b.branch}
              className="min-w-0 truncate font-mono text-sm font-semibold"
            >
              {b.branch}
            </span>
          </h2>
          <p data-testid="branch-summary" className="mt-0.5 text-xs text-stone-500">
            {plural(b.commits.length, "commit")} since{" "}
            <span className="font-mono">{short(b.baseCommit)}</span> ·{" "}
            <span className={b.uncommitted > 0 ? "font-medium text-amber-700 dark:text-amber-300" : ""}>
              {plural(b.uncommitted, "uncommitted file")}
            </span>
            {b.merged && (
              <>
                {" "}
                · merged into <span className="font-mono">{b.merged.into}</span> as{" "}
                <span className="font-mono">{short(b.merged.commit)}</span> {timeAgo(b.merged.at)}
              </>
            )}
          </p>
          {b.remote && (
            <p
              data-testid="branch-remote"
              className="mt-0.5 flex min-w-0 items-baseline gap-1 text-xs text-stone-500"
            >
              <span className="shrink-0">Pushes to</span>
              <span className="min-w-0 truncate font-mono" title={b.remote.url}>
                {b.remote.url}
              </span>
              <span className="shrink-0">
                {b.pushed ? (
                  <>
                    · pushed <span className="font-mono">{short(b.pushed.commit)}</span>
                    {b.pushed.to !== b.remote.url ? " elsewhere" : ""} {timeAgo(b.pushed.at)}
                    {upToDate ? "" : "; changed since"}
                  </>
                ) : (
                  "· not pushed yet"
                )}
              </span>
            </p>
          )}
        </div>
        <div className="flex flex-wrap items-center gap-2">
          <Button
            tone="primary"
            onClick={() => setDialog("commit")}
            disabled={busy || b.uncommitted === 0}
            title={
              busy
                ? "The agent is working: commit when its turn ends"
                : b.uncommitted === 0
                  ? "Nothing to commit: every change is committed"
                  : "Commit the workspace's changes on the session's branch"
            }
          >
            Commit…
          </Button>
          {b.local && (
            <Button
              onClick={() => setDialog("merge")}
              disabled={busy || nothing}
              title={
                busy
                  ? "The agent is working: merge when its turn ends"
                  : nothing
                    ? "Nothing to merge yet"
                    : "Merge the branch into your repository, or apply it as a patch"
              }
            >
              {target ? (
                // One item: the button is a flex box, which would space each text node apart.
                <span>
                  Merge into <span className="font-mono">{target}</span>…
                </span>
              ) : (
                "Merge…"
              )}
            </Button>
          )}
          {b.remote && (
            <Button
              onClick={() => push.mutate()}
              disabled={busy || nothing || push.isPending}
              title={
                busy
                  ? "The agent is working: push when its turn ends"
                  : nothing
                    ? "Nothing to push yet"
                    : `Push ${b.branch} to ${b.remote.url}${b.uncommitted > 0 ? " (the uncommitted changes are committed first)" : ""}${pr?.state === "open" ? `: pull request #${pr.number} follows it` : ""}`
              }
            >
              {push.isPending ? "Pushing…" : "Push"}
            </Button>
          )}
          {b.remote?.forge && pr?.state !== "open" && (
            <Button
              onClick={() => setDialog("pr")}
              disabled={busy || nothing}
              title={
                busy
                  ? "The agent is working: open it when its turn ends"
                  : nothing
                    ? "Nothing to propose yet"
                    : `Push the branch and open a pull request on ${b.remote.forge}`
              }
            >
              Open pull request…
            </Button>
          )}
        </div>
      </div>
      {busy && (
        <p data-testid="land-busy" className="text-xs text-stone-500">
          The agent is working: commit, merge and push once its turn ends, so nothing lands half-written.
        </p>
      )}
      <ActionError
        error={push.error}
        nothing="Nothing to push: the branch has no commits and the workspace no changes."
      />
      {b.commits.length > 0 ? (
        <ol
          data-testid="branch-commits"
          aria-label="Commits on the branch"
          className="divide-y divide-stone-100 rounded-md border border-stone-200 text-sm dark:divide-stone-800 dark:border-stone-800"
        >
          {b.commits.map((c) => (
            <li key={c.sha} className="flex items-baseline gap-3 px-3 py-1.5">
              <span className="shrink-0 font-mono text-xs text-stone-500" title={c.sha}>
                {short(c.sha)}
              </span>
              <span className="min-w-0 flex-1 truncate" title={c.subject}>
                {c.subject}
              </span>
              <span
                className="hidden shrink-0 truncate text-xs text-stone-500 sm:inline"
                title={`${c.author.name} <${c.author.email}>`}
              >
                {c.author.name}
              </span>
              <time dateTime={c.at} className="shrink-0 text-xs text-stone-500" title={c.at}>
                {timeAgo(c.at)}
              </time>
            </li>
          ))}
        </ol>
      ) : (
        <p className="text-xs text-stone-500">
          {b.uncommitted > 0
            ? "No commits on the branch yet: the agent's changes are in the workspace, uncommitted."
            : "No commits on the branch and nothing changed yet."}
        </p>
      )}
      {pr && <PullRequestRow pr={pr} onRefresh={() => readPr.mutate()} refreshing={readPr.isPending} />}
      <ActionError error={readPr.error} nothing="" />
      {outcome && (
        <div
          role="status"
          data-testid="land-result"
          className="flex items-start gap-2 rounded-md bg-emerald-50 px-3 py-2 text-sm text-emerald-900 dark:bg-emerald-950/50 dark:text-emerald-100"
        >
          <span className="min-w-0 flex-1 whitespace-pre-wrap break-words">{outcome.text}</span>
          <button
            type="button"
            onClick={() => setOutcome(null)}
            aria-label="Dismiss"
            className="-m-0.5 shrink-0 rounded p-0.5 text-emerald-800 hover:bg-emerald-100 dark:text-emerald-200 dark:hover:bg-emerald-900"
          >
            <span aria-hidden>✕</span>
          </button>
        </div>
      )}
      <CommitDialog
        open={dialog === "commit"}
        onClose={() => setDialog(null)}
        sessionId={sessionId}
        state={b}
        onDone={done}
      />
      {b.local && (
        <MergeDialog
          open={dialog === "merge"}
          onClose={() => setDialog(null)}
          sessionId={sessionId}
          state={b}
          onDone={done}
        />
      )}
      {b.remote?.forge && (
        <PullRequestDialog
          open={dialog === "pr"}
          onClose={() => setDialog(null)}
          sessionId={sessionId}
          state={b}
          onDone={done}
        />
      )}
    </section>
  );
}

/** An action's refusal: nothing to land is said plainly; a forge that failed may answer a retry. */
function ActionError({ error, nothing }: { error: unknown; nothing: string }) {
  if (!error) return null;
  const err = apiError(error);
  if (err.code === "nothing_to_commit" && nothing)
    return (
      <p role="alert" className="text-sm text-amber-800 dark:text-amber-200">
        {nothing}
      </p>
    );
  if (err.code === "forge_error")
    return (
      <p
        role="alert"
        className="rounded-md bg-red-50 px-3 py-2 text-sm text-red-800 dark:bg-red-950 dark:text-red-200"
      >
        {(error as Error).message}
        <span className="block text-xs">The forge did not answer as expected: try again in a moment.</span>
      </p>
    );
  return <ErrorNote error={error} />;
}

/** The branch's pull request as last read, with a button to read it again from the forge. */
function PullRequestRow({
  pr,
  onRefresh,
  refreshing,
}: {
  pr: PullRequestInfo;
  onRefresh: () => void;
  refreshing: boolean;
}) {
  return (
    <div
      data-testid="pull-request"
      className="flex flex-wrap items-center gap-x-3 gap-y-1 rounded-md border border-stone-200 px-3 py-2 text-sm dark:border-stone-800"
    >
      <span className="shrink-0 text-xs font-medium uppercase tracking-wide text-stone-500">
        Pull request
      </span>
      <a
        href={pr.url}
        target="_blank"
        rel="noreferrer"
        title={`${pr.repo}#${pr.number}: ${pr.title}`}
        className="min-w-0 max-w-full truncate font-medium underline-offset-2 hover:underline"
      >
        #{pr.number} {pr.title}
      </a>
      <PullRequestState pr={pr} />
      <PullRequestChecks checks={pr.checks} />
      <span className="min-w-0 truncate text-xs text-stone-500" title={`${pr.head} into ${pr.base}`}>
        into <span className="font-mono">{pr.base}</span>
      </span>
      <button
        type="button"
        onClick={onRefresh}
        disabled={refreshing}
        title={`Read its state and checks from ${pr.forge} again (last read ${timeAgo(pr.updatedAt)})`}
        className="ml-auto shrink-0 rounded border border-stone-300 px-2 py-0.5 text-xs font-medium text-stone-700 hover:bg-stone-100 disabled:cursor-not-allowed disabled:opacity-50 dark:border-stone-700 dark:text-stone-300 dark:hover:bg-stone-800"
      >
        {refreshing ? "Refreshing…" : "Refresh"}
      </button>
    </div>
  );
}

/** What every landing dialog is given. */
type LandDialogProps = {
  open: boolean;
  onClose: () => void;
  sessionId: string;
  state: BranchState;
  onDone: (o: Outcome) => void;
};

/**
 * Opening the branch's pull request: the branch is pushed first (its uncommitted changes committed),
 * then the forge is asked. A blank title or base is the server's: written from the session, and the
 * branch the session started from (else the repository's default).
 */
function PullRequestDialog({ open, onClose, sessionId, state, onDone }: LandDialogProps) {
  const qc = useQueryClient();
  const [title, setTitle] = useState("");
  const [base, setBase] = useState("");
  const [draft, setDraft] = useState(true);
  const create = useMutation({
    mutationFn: () => {
      const body: Partial<PullRequestBody> = { draft };
      if (title.trim()) body.title = title.trim();
      if (base.trim()) body.base = base.trim();
      return api.sessions.openPullRequest(sessionId, body);
    },
    onSuccess: (pr) => {
      setTitle("");
      setBase("");
      setDraft(true);
      qc.setQueryData<BranchState>(["branch", sessionId], (old) => (old ? { ...old, pullRequest: pr } : old));
      onDone({
        text: `${pr.draft ? "Draft pull request" : "Pull request"} #${pr.number} of ${pr.head} into ${pr.base}: ${pr.url}`,
      });
    },
  });
  // biome-ignore lint/correctness/useExhaustiveDependencies: on opening only
  useEffect(() => {
    if (open) create.reset();
  }, [open]);
  const forge = state.remote?.forge ?? "the forge";
  return (
    <Dialog
      open={open}
      onClose={onClose}
      title="Open a pull request"
      description={
        <>
          Pushes <span className="font-mono">{state.branch}</span>
          {state.uncommitted > 0
            ? ` (its ${plural(state.uncommitted, "uncommitted file")} committed first)`
            : ""}{" "}
          to <span className="break-all font-mono">{state.remote?.url}</span> and opens a pull request on{" "}
          {forge}.
        </>
      }
    >
      <form
        className="mt-3 grid gap-3"
        onSubmit={(e) => {
          e.preventDefault();
          create.mutate();
        }}
      >
        <Field label="Title" hint="Blank: written from the session (its first prompt), as is the description">
          <input
            data-autofocus
            maxLength={256}
            value={title}
            placeholder="Written from the session"
            onChange={(e) => setTitle(e.target.value)}
            className={inputClass}
          />
        </Field>
        <Field
          label="Base branch"
          hint="Blank: the branch the session started from, else the repository's default branch"
        >
          <input
            maxLength={250}
            value={base}
            placeholder="default"
            onChange={(e) => setBase(e.target.value)}
            className={`${inputClass} font-mono`}
          />
        </Field>
        <label className="flex items-start gap-2 text-sm">
          <input
            type="checkbox"
            className="mt-0.5"
            checked={draft}
            onChange={(e) => setDraft(e.target.checked)}
          />
          <span>
            Draft
            <span className="block text-xs text-stone-500">Not ready for review until you mark it so</span>
          </span>
        </label>
        <ActionError
          error={create.error}
          nothing="Nothing to propose: the branch has no commits and the workspace no changes."
        />
        <div className="flex justify-end gap-2">
          <Button onClick={onClose}>Cancel</Button>
          <Button tone="primary" type="submit" disabled={create.isPending}>
            {create.isPending ? "Opening…" : "Open pull request"}
          </Button>
        </div>
      </form>
    </Dialog>
  );
}

function Field({ label, children, hint }: { label: string; children: ReactNode; hint?: ReactNode }) {
  return (
    <div className="grid gap-1">
      {/* biome-ignore lint/a11y/noLabelWithoutControl: the control is the child */}
      <label className="grid gap-1 text-sm">
        <span className="font-medium">{label}</span>
        {children}
      </label>
      {hint && <p className="text-xs text-stone-500">{hint}</p>}
    </div>
  );
}

/**
 * The commit of the workspace's changes. The message and author start as the server's defaults and
 * follow them (a later turn changes the draft) until the person edits them; what they typed survives
 * closing the dialog, and a commit clears it.
 */
function CommitDialog({ open, onClose, sessionId, state, onDone }: LandDialogProps) {
  // What the person changed; a field they have not touched shows the server's current default.
  const [edits, setEdits] = useState<{ message?: string; name?: string; email?: string }>({});
  const message = edits.message ?? withoutTrailer(state.draftMessage);
  const name = edits.name ?? state.author.name;
  const email = edits.email ?? state.author.email;
  const commit = useMutation({
    mutationFn: () =>
      api.sessions.commit(sessionId, { message, author: { name: name.trim(), email: email.trim() } }),
    onSuccess: (r) => {
      setEdits({});
      onDone({
        text: `Committed ${short(r.commit.sha)} on ${r.branch}: ${r.commit.subject} (${plural(r.files, "file")})`,
        sha: r.commit.sha,
      });
    },
  });
  // An error is about the last attempt: opening the dialog again starts clean.
  // biome-ignore lint/correctness/useExhaustiveDependencies: on opening only
  useEffect(() => {
    if (open) commit.reset();
  }, [open]);
  const err = apiError(commit.error);
  return (
    <Dialog
      open={open}
      onClose={onClose}
      title="Commit the session's changes"
      description={
        <>
          {plural(state.uncommitted, "changed file")} in the workspace, committed on{" "}
          <span className="font-mono">{state.branch}</span>.
        </>
      }
    >
      <form
        className="mt-3 grid gap-3"
        onSubmit={(e) => {
          e.preventDefault();
          commit.mutate();
        }}
      >
        <Field label="Message">
          <textarea
            data-autofocus
            required
            rows={8}
            value={message}
            onChange={(e) => setEdits({ ...edits, message: e.target.value })}
            onKeyDown={(e) => {
              if (e.key === "Enter" && (e.metaKey || e.ctrlKey)) {
                e.preventDefault();
                e.currentTarget.form?.requestSubmit();
              }
            }}
            className={`${inputClass} font-mono`}
          />
        </Field>
        <p
          data-testid="co-author"
          className="-mt-1 break-all font-mono text-xs text-stone-500"
          title="Added to the message: the agent did the work with you"
        >
          Co-authored-by: {state.coAuthor.name} &lt;{state.coAuthor.email}&gt;
        </p>
        <div className="grid gap-3 sm:grid-cols-2">
          <Field label="Author name">
            <input
              required
              value={name}
              onChange={(e) => setEdits({ ...edits, name: e.target.value })}
              className={inputClass}
              autoComplete="name"
            />
          </Field>
          <Field label="Author email">
            <input
              required
              type="email"
              value={email}
              onChange={(e) => setEdits({ ...edits, email: e.target.value })}
              className={inputClass}
              autoComplete="email"
            />
          </Field>
        </div>
        {err.code === "nothing_to_commit" ? (
          <p role="alert" className="text-sm text-amber-800 dark:text-amber-200">
            Nothing to commit: the workspace has no changes since the branch's last commit.
          </p>
        ) : (
          <ErrorNote error={commit.error} />
        )}
        <div className="flex justify-end gap-2">
          <Button onClick={onClose}>Cancel</Button>
          <Button tone="primary" type="submit" disabled={commit.isPending}>
            {commit.isPending ? "Committing…" : "Commit"}
          </Button>
        </div>
      </form>
    </Dialog>
  );
}

/** The files an error is about, as a list under what to do about them. */
function FileProblem({ title, files, children }: { title: ReactNode; files: string[]; children: ReactNode }) {
  return (
    <div
      role="alert"
      data-testid="merge-problem"
      className="grid gap-2 rounded-md bg-amber-50 px-3 py-2 text-sm text-amber-950 dark:bg-amber-950/40 dark:text-amber-100"
    >
      <p className="font-medium">{title}</p>
      {files.length > 0 && (
        <ul aria-label="Files" className="grid gap-0.5 font-mono text-xs">
          {files.map((f) => (
            <li key={f} className="break-all">
              {f}
            </li>
          ))}
        </ul>
      )}
      <div className="text-xs">{children}</div>
    </div>
  );
}

/** The merge (or squash, or patch) of the session's branch into a branch of the user's repository. */
function MergeDialog({ open, onClose, sessionId, state, onDone }: LandDialogProps) {
  const target = state.target ?? "";
  const [intoEdit, setInto] = useState<string | undefined>();
  const into = intoEdit ?? target;
  const [squash, setSquash] = useState(false);
  const [patch, setPatch] = useState(false);
  const [message, setMessage] = useState("");
  const merge = useMutation({
    mutationFn: () => {
      const body: Partial<MergeBody> = { squash: squash && !patch, patch };
      if (into.trim()) body.into = into.trim();
      if (message.trim() && !patch) body.message = message.trim();
      return api.sessions.merge(sessionId, body);
    },
    onSuccess: (r) => {
      setInto(undefined);
      setMessage("");
      onDone({ text: r.message, sha: r.commit ?? undefined });
    },
  });
  // biome-ignore lint/correctness/useExhaustiveDependencies: on opening only
  useEffect(() => {
    if (open) merge.reset();
  }, [open]);
  const err = apiError(merge.error);
  const dest = err.into ?? (into.trim() || target || "the checked-out branch");
  const asPatchInstead = !patch && (
    <div className="mt-2">
      <Button
        onClick={() => {
          setPatch(true);
          merge.reset();
        }}
      >
        Apply as a patch instead
      </Button>
    </div>
  );
  return (
    <Dialog
      open={open}
      onClose={onClose}
      title={patch ? "Apply the session's changes as a patch" : "Merge the session's branch"}
      description={
        <>
          <span className="font-mono">{state.branch}</span> ({plural(state.commits.length, "commit")}
          {state.uncommitted > 0 ? `, ${plural(state.uncommitted, "uncommitted file")} committed first` : ""})
          into your repository.
        </>
      }
    >
      <form
        className="mt-3 grid gap-3"
        onSubmit={(e) => {
          e.preventDefault();
          merge.mutate();
        }}
      >
        <Field
          label={patch ? "Into the working tree of branch" : "Into branch"}
          hint={
            patch
              ? "Where that branch is checked out, the changes land uncommitted; that tree may have changes of its own."
              : "A branch of your repository; if it is checked out and clean, your working tree shows the merge."
          }
        >
          <input
            data-autofocus
            value={into}
            placeholder={target || "the checked-out branch"}
            onChange={(e) => setInto(e.target.value)}
            className={`${inputClass} font-mono`}
          />
        </Field>
        <fieldset className="grid gap-2 text-sm">
          <legend className="sr-only">How</legend>
          <label className={`flex items-start gap-2 ${patch ? "opacity-50" : ""}`}>
            <input
              type="checkbox"
              className="mt-0.5"
              checked={squash && !patch}
              disabled={patch}
              onChange={(e) => setSquash(e.target.checked)}
            />
            <span>
              Squash
              <span className="block text-xs text-stone-500">
                One commit on the target instead of the branch's
              </span>
            </span>
          </label>
          <label className="flex items-start gap-2">
            <input
              type="checkbox"
              className="mt-0.5"
              checked={patch}
              onChange={(e) => {
                setPatch(e.target.checked);
                merge.reset();
              }}
            />
            <span>
              Apply as a patch to my working tree
              <span className="block text-xs text-stone-500">
                Committed or not, the changes land uncommitted in your checkout, for you to review and commit
              </span>
            </span>
          </label>
        </fieldset>
        {!patch && (squash || state.uncommitted > 0) && (
          <Field
            label="Message (optional)"
            hint="Of the squash commit, and of the commit of uncommitted changes"
          >
            <textarea
              rows={3}
              value={message}
              placeholder={withoutTrailer(state.draftMessage).split("\n")[0]}
              onChange={(e) => setMessage(e.target.value)}
              className={`${inputClass} font-mono`}
            />
          </Field>
        )}
        {err.code === "merge_conflict" ? (
          <FileProblem
            title={
              patch ? (
                <>The patch does not apply to {plural(err.files.length, "file")}; nothing was changed.</>
              ) : (
                <>
                  Merging into <span className="font-mono">{dest}</span> conflicts in{" "}
                  {plural(err.files.length, "file")}; nothing was changed.
                </>
              )
            }
            files={err.files}
          >
            {patch ? (
              <>
                Ask the agent to bring its branch up to date with your checkout and resolve the conflicts (for
                example: “merge {target || "main"} into your branch and resolve the conflicts”), then apply
                again.
              </>
            ) : (
              <>
                Ask the agent to resolve them (for example: “merge {dest} into your branch and resolve the
                conflicts”), then merge again, or apply the changes as a patch and resolve them yourself.
              </>
            )}
            {asPatchInstead}
          </FileProblem>
        ) : err.code === "worktree_dirty" ? (
          <FileProblem
            title={
              err.files.length > 0 ? (
                <>
                  <span className="font-mono">{dest}</span> is checked out
                  {err.path ? (
                    <>
                      {" "}
                      in <span className="break-all font-mono">{err.path}</span>
                    </>
                  ) : null}{" "}
                  with uncommitted changes to {plural(err.files.length, "file")}; nothing was changed.
                </>
              ) : (
                (merge.error as Error).message
              )
            }
            files={err.files}
          >
            Commit or stash them there first
            {patch ? "." : ", merge into a branch that is not checked out, or apply the changes as a patch."}
            {asPatchInstead}
          </FileProblem>
        ) : (
          <ErrorNote error={merge.error} />
        )}
        <div className="flex justify-end gap-2">
          <Button onClick={onClose}>Cancel</Button>
          <Button tone="primary" type="submit" disabled={merge.isPending}>
            {merge.isPending ? "Working…" : patch ? "Apply patch" : squash ? "Squash and merge" : "Merge"}
          </Button>
        </div>
      </form>
    </Dialog>
  );
}
