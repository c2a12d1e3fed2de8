import type { PullRequestInfo } from "@flotilla/contracts";
import type { Forge as ForgeSettings } from "../../config/config.ts";
import { GiteaForge } from "./gitea.ts";
import { GitHubForge } from "./github.ts";

/** A repository on a forge, as its API names it. */
export interface RepoRef {
  owner: string;
  name: string;
}

export interface IssueThread {
  title: string;
  body: string;
  url: string;
  comments: { user: string; body: string }[];
}

/**
 * A code host behind one small interface: what landing work on it needs (credentials for a push,
 * pull requests and their checks, comments) and what work that starts there needs (a signed
 * webhook, an issue's thread). GitHub (and GitHub Enterprise) and Gitea (and Forgejo) implement
 * it; GitLab would implement the same methods against its API.
 */
export interface ForgeClient {
  readonly settings: ForgeSettings;
  /** Credentials for one push to `repo`, as a git credential helper hands them to git: short-lived
   * where the forge can make them so (a GitHub App's installation token lasts an hour). */
  gitCredentials(repo: RepoRef): Promise<{ username: string; password: string }>;
  defaultBranch(repo: RepoRef): Promise<string>;
  /** Opens a pull request of `head` into `base`, or returns the open one `head` already has. */
  openPullRequest(
    repo: RepoRef,
    pr: { head: string; base: string; title: string; body: string; draft: boolean; labels: string[] },
  ): Promise<PullRequestInfo>;
  pullRequest(repo: RepoRef, number: number): Promise<PullRequestInfo>;
  comment(repo: RepoRef, issue: number, body: string): Promise<{ url: string }>;
  issue(repo: RepoRef, number: number): Promise<IssueThread>;
  /** Whether `user` may start work on `repo` with a `/flotilla` comment (`association`: as the webhook says). */
  mayCommand(repo: RepoRef, user: string, association: string | undefined): Promise<boolean>;
  /** Whether a webhook's body was signed with the forge's webhook secret. */
  verifyWebhook(body: string, signature: string | undefined): Promise<boolean>;
}

/** The forges configured, and which serves a git remote. */
export class Forges {
  private readonly clients: ForgeClient[];

  constructor(settings: ForgeSettings[]) {
    this.clients = settings.map((s) => (s.type === "gitea" ? new GiteaForge(s) : new GitHubForge(s)));
  }

  byName(name: string): ForgeClient | undefined {
    return this.clients.find((c) => c.settings.name === name);
  }

  /** The forge whose hosts include the remote's, with the repository the remote names there. */
  forRemote(remote: string): { forge: ForgeClient; repo: RepoRef } | undefined {
    const parsed = parseRemote(remote);
    if (!parsed) return undefined;
    const forge = this.clients.find((c) => c.settings.hosts.includes(parsed.host));
    return forge ? { forge, repo: parsed.repo } : undefined;
  }
}

/** host and owner/name of a git remote URL (https://host/owner/name(.git), ssh://, git@host:owner/name). */
export function parseRemote(remote: string): { host: string; repo: RepoRef } | undefined {
  let host: string;
  let path: string;
  const scp = /^[\w.-]+@([\w.-]+):(.+)$/.exec(remote);
  if (scp) {
    host = scp[1]!;
    path = scp[2]!;
  } else {
    try {
      const u = new URL(remote);
      host = u.host;
      path = u.pathname;
    } catch {
      return undefined;
    }
  }
  const parts = path
    .replace(/^\/+|\/+$/g, "")
    .replace(/\.git$/, "")
    .split("/");
  if (parts.length < 2) return undefined;
  return { host, repo: { owner: parts.at(-2)!, name: parts.at(-1)! } };
}

export type CheckState = "success" | "failure" | "pending";

/** A pull request's checks (statuses and check runs, each reduced to one state) as one summary. */
export function summarizeChecks(states: CheckState[]): PullRequestInfo["checks"] {
  const count = (s: CheckState) => states.filter((x) => x === s).length;
  const failed = count("failure");
  const pending = count("pending");
  return {
    state: states.length === 0 ? "none" : failed > 0 ? "failure" : pending > 0 ? "pending" : "success",
    total: states.length,
    passed: count("success"),
    failed,
    pending,
  };
}
