import type { PullRequestInfo } from "@flotilla/contracts";
import { createAppAuth } from "@octokit/auth-app";
import { Octokit } from "@octokit/rest";
import { verify } from "@octokit/webhooks-methods";
import type { Forge as ForgeSettings } from "../../config/config.ts";
import {
  type CheckState,
  type ForgeClient,
  type IssueThread,
  type RepoRef,
  summarizeChecks,
} from "./forge.ts";

/**
 * GitHub and GitHub Enterprise Server through Octokit, authenticated by a token or as a GitHub App
 * (a JWT signed with the app's key buys an installation token for the repository, good for an hour).
 */
export class GitHubForge implements ForgeClient {
  private readonly appClient: Octokit | undefined;

  constructor(readonly settings: ForgeSettings) {
    if (settings.app)
      this.appClient = new Octokit({
        baseUrl: settings.apiUrl,
        authStrategy: createAppAuth,
        auth: { appId: settings.app.id, privateKey: settings.app.privateKey },
      });
  }

  /** An API client acting for `repo`: the token, or the app's installation on that repository. */
  private async client(repo: RepoRef): Promise<Octokit> {
    if (this.appClient) {
      const { token } = await this.installationToken(repo);
      return new Octokit({ baseUrl: this.settings.apiUrl, auth: token });
    }
    if (!this.settings.token)
      throw new Error(
        `forge ${this.settings.name} has no token: set its tokenEnv variable, or configure an app`,
      );
    return new Octokit({ baseUrl: this.settings.apiUrl, auth: this.settings.token });
  }

  private async installationToken(repo: RepoRef): Promise<{ token: string }> {
    const app = this.appClient!;
    const { data } = await app.rest.apps.getRepoInstallation({ owner: repo.owner, repo: repo.name });
    const auth = (await app.auth({ type: "installation", installationId: data.id })) as { token: string };
    return { token: auth.token };
  }

  async gitCredentials(repo: RepoRef): Promise<{ username: string; password: string }> {
    if (this.appClient)
      return { username: "x-access-token", password: (await this.installationToken(repo)).token };
    if (!this.settings.token)
      throw new Error(
        `forge ${this.settings.name} has no token: set its tokenEnv variable, or configure an app`,
      );
    return { username: "x-access-token", password: this.settings.token };
  }

  async defaultBranch(repo: RepoRef): Promise<string> {
    const gh = await this.client(repo);
    const { data } = await gh.rest.repos.get({ owner: repo.owner, repo: repo.name });
    return data.default_branch;
  }

  async openPullRequest(
    repo: RepoRef,
    pr: { head: string; base: string; title: string; body: string; draft: boolean; labels: string[] },
  ): Promise<PullRequestInfo> {
    const gh = await this.client(repo);
    const existing = await gh.rest.pulls.list({
      owner: repo.owner,
      repo: repo.name,
      head: `${repo.owner}:${pr.head}`,
      state: "open",
    });
    let number = existing.data[0]?.number;
    if (number === undefined) {
      const { data } = await gh.rest.pulls.create({
        owner: repo.owner,
        repo: repo.name,
        head: pr.head,
        base: pr.base,
        title: pr.title,
        body: pr.body,
        draft: pr.draft,
      });
      number = data.number;
      if (pr.labels.length > 0)
        await gh.rest.issues.addLabels({
          owner: repo.owner,
          repo: repo.name,
          issue_number: number,
          labels: pr.labels,
        });
    }
    return this.read(gh, repo, number);
  }

  async pullRequest(repo: RepoRef, number: number): Promise<PullRequestInfo> {
    return this.read(await this.client(repo), repo, number);
  }

  private async read(gh: Octokit, repo: RepoRef, number: number): Promise<PullRequestInfo> {
    const { data: pr } = await gh.rest.pulls.get({ owner: repo.owner, repo: repo.name, pull_number: number });
    const sha = pr.head.sha;
    const [status, runs] = await Promise.all([
      gh.rest.repos.getCombinedStatusForRef({ owner: repo.owner, repo: repo.name, ref: sha }),
      gh.rest.checks.listForRef({ owner: repo.owner, repo: repo.name, ref: sha, per_page: 100 }),
    ]);
    const states: CheckState[] = [
      ...status.data.statuses.map(
        (s): CheckState =>
          s.state === "success" ? "success" : s.state === "pending" ? "pending" : "failure",
      ),
      ...runs.data.check_runs.map(
        (r): CheckState =>
          r.status !== "completed"
            ? "pending"
            : ["success", "neutral", "skipped"].includes(r.conclusion ?? "")
              ? "success"
              : "failure",
      ),
    ];
    return {
      forge: this.settings.name,
      repo: `${repo.owner}/${repo.name}`,
      number: pr.number,
      url: pr.html_url,
      title: pr.title,
      state: pr.merged_at ? "merged" : pr.state === "closed" ? "closed" : "open",
      draft: pr.draft ?? false,
      head: pr.head.ref,
      base: pr.base.ref,
      headSha: sha,
      checks: summarizeChecks(states),
      updatedAt: pr.updated_at,
    };
  }

  async comment(repo: RepoRef, issue: number, body: string): Promise<{ url: string }> {
    const gh = await this.client(repo);
    const { data } = await gh.rest.issues.createComment({
      owner: repo.owner,
      repo: repo.name,
      issue_number: issue,
      body,
    });
    return { url: data.html_url };
  }

  async issue(repo: RepoRef, number: number): Promise<IssueThread> {
    const gh = await this.client(repo);
    const [{ data: issue }, { data: comments }] = await Promise.all([
      gh.rest.issues.get({ owner: repo.owner, repo: repo.name, issue_number: number }),
      gh.rest.issues.listComments({
        owner: repo.owner,
        repo: repo.name,
        issue_number: number,
        per_page: 100,
      }),
    ]);
    return {
      title: issue.title,
      body: issue.body ?? "",
      url: issue.html_url,
      comments: comments.map((c) => ({ user: c.user?.login ?? "ghost", body: c.body ?? "" })),
    };
  }

  async mayCommand(_repo: RepoRef, _user: string, association: string | undefined): Promise<boolean> {
    return this.settings.commandAssociations.includes(association ?? "NONE");
  }

  async verifyWebhook(body: string, signature: string | undefined): Promise<boolean> {
    if (!this.settings.webhookSecret || !signature) return false;
    // A malformed signature header throws: it is as unverified as a wrong one.
    return verify(this.settings.webhookSecret, body, signature).catch(() => false);
  }
}
