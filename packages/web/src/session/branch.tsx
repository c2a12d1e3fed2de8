import type { PullRequestInfo } from "@flotilla/client";
import type { SessionStatus } from "@flotilla/contracts/transcript";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useCallback, useEffect, useRef } from "react";
import { api } from "../api.ts";

/**
 * The session's branch as the session's layout and its Changes tab share it: one query, kept
 * current by the session's `git` events, and the pull request's badge for the header. (The landing
 * panel itself, with its dialogs, is loaded with the Changes tab.)
 */

export const isBusy = (s: SessionStatus | undefined) => s === "running" || s === "waiting_permission";
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

export function useRefreshBranch(sessionId: string) {
  const qc = useQueryClient();
  return useCallback(() => {
    void qc.invalidateQueries({ queryKey: ["branch", sessionId] });
    void qc.invalidateQueries({ queryKey: ["diff", sessionId] });
  }, [qc, sessionId]);
}

/**
 * Keeps the session's branch and diff current, from the session's layout (so that its header and
 * every tab share one reading): they are re-read when a `git` event arrives (a commit, a push, a
 * pull request's state or checks changed, from this tab or another) and when a turn ends. A query
 * not on screen is only marked stale, and read when it is shown.
 */
export function useBranchFreshness(sessionId: string, status: SessionStatus | undefined, gitSeq: number) {
  const refresh = useRefreshBranch(sessionId);
  // Not on mount (the queries are about to be read): on a new git event, and when a turn ends.
  const seen = useRef({ gitSeq, status });
  useEffect(() => {
    const prev = seen.current;
    seen.current = { gitSeq, status };
    if (gitSeq !== prev.gitSeq || (status !== prev.status && !isBusy(status))) refresh();
  }, [gitSeq, status, refresh]);
}

/** A session whose workspace exists: its branch can be read. */
export const hasBranch = (s: SessionStatus | undefined) =>
  s === "idle" || s === "running" || s === "waiting_permission" || s === "interrupted";

/**
 * The session's branch as last read. The session's header asks only once the workspace exists (a
 * session still provisioning, or that failed to start, has none); the Changes tab always asks.
 */
export function useBranch(sessionId: string, enabled = true) {
  return useQuery({
    queryKey: ["branch", sessionId],
    queryFn: () => api.sessions.branch(sessionId),
    enabled,
  });
}

const PR_STATE_STYLE = {
  draft: "bg-stone-200 text-stone-700 dark:bg-stone-800 dark:text-stone-300",
  open: "bg-emerald-100 text-emerald-800 dark:bg-emerald-900/50 dark:text-emerald-200",
  merged: "bg-violet-100 text-violet-800 dark:bg-violet-900/50 dark:text-violet-200",
  closed: "bg-red-100 text-red-800 dark:bg-red-900/50 dark:text-red-200",
};

/** open, draft (an open draft), merged or closed, as a pill. */
export function PullRequestState({ pr }: { pr: PullRequestInfo }) {
  const state = pr.state === "open" && pr.draft ? "draft" : pr.state;
  return (
    <span
      data-testid="pr-state"
      className={`inline-flex shrink-0 items-center rounded-full px-2 py-0.5 text-xs font-medium ${PR_STATE_STYLE[state]}`}
    >
      {state}
    </span>
  );
}

/** The head commit's checks in a few characters: ✓ 3/3, ✗ 1 failed, … 2 pending (nothing when there are none). */
export function PullRequestChecks({ checks }: { checks: PullRequestInfo["checks"] }) {
  if (checks.state === "none" || checks.total === 0) return null;
  const title = `${checks.passed} of ${plural(checks.total, "check")} passed, ${checks.failed} failed, ${checks.pending} pending`;
  const [text, tone] =
    checks.state === "success"
      ? [`✓ ${checks.passed}/${checks.total}`, "text-emerald-700 dark:text-emerald-400"]
      : checks.state === "failure"
        ? [`✗ ${checks.failed} failed`, "text-red-700 dark:text-red-400"]
        : [`… ${checks.pending} pending`, "text-amber-700 dark:text-amber-300"];
  return (
    <span data-testid="pr-checks" title={title} className={`shrink-0 font-mono text-xs font-medium ${tone}`}>
      {text}
    </span>
  );
}

/**
 * The session's pull request in its header, once the branch has one: a link to it, its state and
 * its checks, read with the Changes tab's branch (one reading for both, kept current by git events).
 */
export function SessionPullRequest({
  sessionId,
  status,
}: {
  sessionId: string;
  status: SessionStatus | undefined;
}) {
  const pr = useBranch(sessionId, hasBranch(status)).data?.pullRequest;
  if (!pr) return null;
  return (
    <span data-testid="session-pr" className="flex shrink-0 items-center gap-1.5">
      <a
        href={pr.url}
        target="_blank"
        rel="noreferrer"
        title={`Pull request ${pr.repo}#${pr.number}: ${pr.title}`}
        className="font-mono text-xs font-medium text-stone-700 underline underline-offset-2 hover:text-stone-900 dark:text-stone-300 dark:hover:text-white"
      >
        PR #{pr.number}
      </a>
      <PullRequestState pr={pr} />
      <PullRequestChecks checks={pr.checks} />
    </span>
  );
}
