import { createHmac, timingSafeEqual } from "node:crypto";
import type { PullRequestInfo } from "@flotilla/contracts";
import { type Api, giteaApi } from "gitea-js";
import type { Forge as ForgeSettings } from "../../config/config.ts";
import {
  type CheckState,
  type ForgeClient,
  type IssueThread,
  type RepoRef,
  summarizeChecks,
} from "./forge.ts";

/** Gitea (and Forgejo) marks a pull request as a draft by this title prefix. */
const DRAFT = "WIP: ";

/**
 * Gitea and Forgejo through gitea-js, a client generated from Gitea's own API description, with a
 * token. Gitea has no GitHub-style author associations: a `/flotilla` comment is taken from whoever
 * has write access (or more) to the repository, as Gitea itself reports it.
 */
export class GiteaForge implements ForgeClient {
  private readonly api: Api<unknown>;

  constructor(readonly settings: ForgeSettings) {
    // gitea-js appends /api/v1 itself.
    const base = settings.apiUrl.replace(/\/api\/v1\/?$/, "");
    this.api = giteaApi(base, { token: settings.token, customFetch: fetch });
  }

  private token(): string {
    if (!this.settings.token)
      throw new Error(`forge ${this.settings.name} has no token: set its tokenEnv variable`);
    return this.settings.token;
  }

  async gitCredentials(_repo: RepoRef): Promise<{ username: string; password: string }> {
    // Gitea takes an access token as the password of HTTP basic auth; "oauth2" names no user.
    return { username: "oauth2", password: this.token() };
  }

  async defaultBranch(repo: RepoRef): Promise<string> {
    const { data } = await this.api.repos.repoGet(repo.owner, repo.name);
    return data.default_branch ?? "main";
  }

  async mayCommand(repo: RepoRef, user: string): Promise<boolean> {
    const { data } = await this.api.repos.repoGetRepoPermissions(repo.owner, repo.name, user).catch(() => ({
      data: { permission: "none" },
    }));
    return ["write", "admin", "owner"].includes(data.permission ?? "none");
  }

  async openPullRequest(
    repo: RepoRef,
    pr: { head: string; base: string; title: string; body: string; draft: boolean; labels: string[] },
  ): Promise<PullRequestInfo> {
    const open = await this.api.repos.repoListPullRequests(repo.owner, repo.name, {
      state: "open",
      limit: 50,
    });
    let number = open.data.find((p) => p.head?.ref === pr.head)?.number;
    if (number === undefined) {
      // Labels are given by id on Gitea: the repository's labels of those names.
      const labels =
        pr.labels.length > 0
          ? (await this.api.repos.issueListLabels(repo.owner, repo.name, { limit: 50 })).data
              .filter((l) => pr.labels.includes(l.name ?? ""))
              .map((l) => l.id!)
          : [];
      const { data } = await this.api.repos.repoCreatePullRequest(repo.owner, repo.name, {
        head: pr.head,
        base: pr.base,
        title: pr.draft ? `${DRAFT}${pr.title}` : pr.title,
        body: pr.body,
        ...(labels.length > 0 ? { labels } : {}),
      });
      number = data.number!;
    }
    return this.pullRequest(repo, number);
  }

  async pullRequest(repo: RepoRef, number: number): Promise<PullRequestInfo> {
    const { data: pr } = await this.api.repos.repoGetPullRequest(repo.owner, repo.name, number);
    const sha = pr.head?.sha ?? "";
    const { data: status } = await this.api.repos.repoGetCombinedStatusByRef(repo.owner, repo.name, sha, {
      limit: 50,
    });
    const states: CheckState[] = (status.statuses ?? []).map((s) =>
      s.status === "success" ? "success" : s.status === "pending" ? "pending" : "failure",
    );
    const title = pr.title ?? "";
    return {
      forge: this.settings.name,
      repo: `${repo.owner}/${repo.name}`,
      number: pr.number ?? number,
      url: pr.html_url ?? "",
      title: title.startsWith(DRAFT) ? title.slice(DRAFT.length) : title,
      state: pr.merged ? "merged" : pr.state === "closed" ? "closed" : "open",
      draft: pr.draft ?? title.startsWith(DRAFT),
      head: pr.head?.ref ?? "",
      base: pr.base?.ref ?? "",
      headSha: sha,
      checks: summarizeChecks(states),
      updatedAt: pr.updated_at ?? new Date().toISOString(),
    };
  }

  async comment(repo: RepoRef, issue: number, body: string): Promise<{ url: string }> {
    const { data } = await this.api.repos.issueCreateComment(repo.owner, repo.name, issue, { body });
    return { url: data.html_url ?? "" };
  }

  async issue(repo: RepoRef, number: number): Promise<IssueThread> {
    const [{ data: issue }, { data: comments }] = await Promise.all([
      this.api.repos.issueGetIssue(repo.owner, repo.name, number),
      this.api.repos.issueGetComments(repo.owner, repo.name, number),
    ]);
    return {
      title: issue.title ?? "",
      body: issue.body ?? "",
      url: issue.html_url ?? "",
      comments: comments.map((c) => ({ user: c.user?.login ?? "ghost", body: c.body ?? "" })),
    };
  }

  /** Gitea signs with a hex HMAC-SHA256 of the body (X-Gitea-Signature; also sent as X-Hub-Signature-256). */
  async verifyWebhook(body: string, signature: string | undefined): Promise<boolean> {
    if (!this.settings.webhookSecret || !signature) return false;
    const want = createHmac("sha256", this.settings.webhookSecret).update(body).digest();
    const got = Buffer.from(signature.replace(/^sha256=/, ""), "hex");
    return got.length === want.length && timingSafeEqual(got, want);
  }
}
