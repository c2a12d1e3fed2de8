import type { IncomingMessage, ServerResponse } from "node:http";
import type {
  CombinedStatus,
  Comment,
  CreateIssueCommentOption,
  CreatePullRequestOption,
  Issue,
  Label,
  PullRequest,
  RepoCollaboratorPermission,
  Repository,
} from "gitea-js";
import { FakeGitHub, type FakePull } from "./fake-github.ts";

/**
 * Gitea on loopback, for tests: the operations of Gitea's API (v1) Flotilla calls, and the same
 * real git over smart HTTP as FakeGitHub (a push needs the token).
 *
 * Why it is faithful: Flotilla calls Gitea through gitea-js, a client generated from Gitea's own
 * API description, so its paths, methods and bodies are Gitea's by construction; this server
 * answers only those operations (anything else is recorded in `violations` and refused with 404),
 * and every answer is typed with gitea-js's types for that operation's response, so a field
 * Flotilla reads that Gitea does not send fails to compile here.
 */
export class FakeGitea extends FakeGitHub {
  /** Repository labels, by name (Gitea takes them by id). */
  readonly labels = ["flotilla", "agent"];
  /** Users with write access to every repository; anyone else has read access. */
  readonly writers = new Set<string>(["maintainer"]);

  override get apiUrl(): string {
    return `${this.url}/api/v1`;
  }

  protected override async gitea(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    auth: string,
  ): Promise<void> {
    const send = (status: number, body: unknown): void => {
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    };
    const token = /^(?:token|bearer) (.+)$/i.exec(auth)?.[1];
    if (token !== this.token) return send(401, { message: "token is required" });
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = chunks.length > 0 ? JSON.parse(Buffer.concat(chunks).toString()) : undefined;
    const path = url.pathname.slice("/api/v1".length);
    const method = req.method ?? "GET";
    /** The path's parts when it matches `re` (and the method is `verb`, if one is given). */
    const at = (re: RegExp, verb?: string): string[] | null =>
      verb && verb !== method ? null : re.exec(path);
    this.calls.push({ operationId: `${method} ${path}`, body });

    if (at(/^\/repos\/([^/]+)\/([^/]+)$/, "GET")) {
      const r = at(/^\/repos\/([^/]+)\/([^/]+)$/)!;
      const repo: Repository = { name: r[2], full_name: `${r[1]}/${r[2]}`, default_branch: "main" };
      return send(200, repo);
    }
    if (at(/^\/repos\/([^/]+)\/([^/]+)\/collaborators\/([^/]+)\/permission$/, "GET")) {
      const r = at(/^\/repos\/([^/]+)\/([^/]+)\/collaborators\/([^/]+)\/permission$/)!;
      const p: RepoCollaboratorPermission = { permission: this.writers.has(r[3]!) ? "write" : "read" };
      return send(200, p);
    }
    if (at(/^\/repos\/([^/]+)\/([^/]+)\/labels$/, "GET")) {
      const r = at(/^\/repos\/([^/]+)\/([^/]+)\/labels$/)!;
      const labels: Label[] = this.labels.map((name, i) => ({ id: i + 1, name }));
      return send(200, labels);
    }
    if (at(/^\/repos\/([^/]+)\/([^/]+)\/pulls$/)) {
      const r = at(/^\/repos\/([^/]+)\/([^/]+)\/pulls$/)!;
      const [owner, name] = [r[1]!, r[2]!];
      if (method === "GET") {
        const state = url.searchParams.get("state") ?? "open";
        return send(
          200,
          this.pulls
            .filter((p) => p.owner === owner && p.repo === name && (state === "all" || p.state === state))
            .map((p) => this.giteaPull(p)),
        );
      }
      if (method === "POST") {
        const o = body as CreatePullRequestOption;
        const headSha = this.ref(owner, name, o.head ?? "");
        if (!headSha) return send(422, { message: "head branch does not exist" });
        const p: FakePull = {
          number: this.pulls.length + this.issues.size + 1,
          owner,
          repo: name,
          head: o.head!,
          base: o.base!,
          title: o.title!,
          body: o.body ?? "",
          draft: false,
          state: "open",
          merged: false,
          labels: (o.labels ?? []).map((id) => this.labels[id - 1]!),
          headSha,
        };
        this.pulls.push(p);
        return send(201, this.giteaPull(p));
      }
    }
    if (at(/^\/repos\/([^/]+)\/([^/]+)\/pulls\/(\d+)$/, "GET")) {
      const r = at(/^\/repos\/([^/]+)\/([^/]+)\/pulls\/(\d+)$/)!;
      const p = this.pulls.find((x) => x.owner === r[1] && x.repo === r[2] && x.number === Number(r[3]));
      if (!p) return send(404, { message: "not found" });
      p.headSha = this.ref(p.owner, p.repo, p.head) ?? p.headSha;
      return send(200, this.giteaPull(p));
    }
    if (at(/^\/repos\/([^/]+)\/([^/]+)\/commits\/([^/]+)\/status$/, "GET")) {
      const r = at(/^\/repos\/([^/]+)\/([^/]+)\/commits\/([^/]+)\/status$/)!;
      const list = this.statuses.get(r[3]!) ?? [];
      const combined: CombinedStatus = {
        sha: r[3],
        state: list.some((s) => s.state === "failure")
          ? "failure"
          : list.length === 0
            ? "pending"
            : "success",
        total_count: list.length,
        statuses: list.map((s, i) => ({ id: i + 1, status: s.state, context: s.context })),
      };
      return send(200, combined);
    }
    if (at(/^\/repos\/([^/]+)\/([^/]+)\/issues\/(\d+)$/, "GET")) {
      const r = at(/^\/repos\/([^/]+)\/([^/]+)\/issues\/(\d+)$/)!;
      const issue = this.issues.get(`${r[1]}/${r[2]}#${r[3]}`);
      if (!issue) return send(404, { message: "not found" });
      const out: Issue = {
        number: Number(r[3]),
        title: issue.title,
        body: issue.body,
        html_url: `${this.url}/${r[1]}/${r[2]}/issues/${r[3]}`,
      };
      return send(200, out);
    }
    if (at(/^\/repos\/([^/]+)\/([^/]+)\/issues\/(\d+)\/comments$/)) {
      const r = at(/^\/repos\/([^/]+)\/([^/]+)\/issues\/(\d+)\/comments$/)!;
      const [owner, name, issue] = [r[1]!, r[2]!, Number(r[3])];
      if (method === "GET") {
        const list: Comment[] = this.comments
          .filter((c) => c.owner === owner && c.repo === name && c.issue === issue)
          .map((c, i) => ({ id: i + 1, body: c.body, user: { login: c.user } }));
        return send(200, list);
      }
      if (method === "POST") {
        const o = body as CreateIssueCommentOption;
        this.comments.push({ owner, repo: name, issue, body: o.body, user: "flotilla-bot" });
        const c: Comment = {
          id: this.comments.length,
          body: o.body,
          html_url: `${this.url}/${owner}/${name}/issues/${issue}#issuecomment-${this.comments.length}`,
        };
        return send(201, c);
      }
    }
    this.violations.push(`${method} ${path}: not an operation Flotilla is described to call`);
    return send(404, { message: "not found" });
  }

  private giteaPull(p: FakePull): PullRequest {
    return {
      id: 1000 + p.number,
      number: p.number,
      title: p.title,
      body: p.body,
      state: p.state,
      merged: p.merged,
      html_url: `${this.url}/${p.owner}/${p.repo}/pulls/${p.number}`,
      head: { ref: p.head, sha: p.headSha },
      base: { ref: p.base },
      labels: p.labels.map((name) => ({ id: this.labels.indexOf(name) + 1, name })),
      updated_at: new Date().toISOString(),
    };
  }
}
