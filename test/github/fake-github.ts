import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { type KeyObject, randomBytes, verify } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { Ajv, type ValidateFunction } from "ajv";
import { tempDir } from "../support.ts";

/**
 * GitHub on loopback, for tests: its REST API (the operations Flotilla calls, under /api/v3 as
 * GitHub Enterprise serves it) and git over smart HTTP (`git http-backend`) for its repositories.
 *
 * Why it is faithful: every API request is checked against GitHub's own OpenAPI description of
 * that operation (path and query parameters, JSON body; test/github/api-subset.json, cut from the
 * @octokit/openapi package by scripts/github-api-subset.mjs) and a request it does not describe is
 * refused with 404 as GitHub does; every answer starts from GitHub's documented example response
 * for that operation, with ids, numbers, refs, states and URLs replaced by this server's own. A
 * request that breaks the description is recorded in `violations`, which a test asserts empty.
 * Git is real git. Both refuse a caller without the token, as GitHub does.
 */

type Json = Record<string, unknown>;
interface Operation {
  operationId: string;
  parameters: { name: string; in: string; required: boolean; schema: Json }[];
  requestBody: Json | null;
  /** Whether the operation needs a body at all (create-installation-access-token does not). */
  requestBodyRequired: boolean;
  responses: Record<string, { schema?: Json; example?: unknown }>;
}
interface Spec {
  paths: Record<string, Record<string, Operation>>;
}

const spec: Spec = JSON.parse(readFileSync(join(import.meta.dirname, "api-subset.json"), "utf8"));

/** OpenAPI 3.0's `nullable` means "or null"; Ajv needs a `type` beside it, which GitHub's schemas sometimes leave out. */
function forAjv(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(forAjv);
  if (!schema || typeof schema !== "object") return schema;
  const out: Json = {};
  for (const [k, v] of Object.entries(schema)) out[k] = forAjv(v);
  if (out.nullable && !out.type) delete out.nullable;
  return out;
}

const ajv = new Ajv({ strict: false, allErrors: true, logger: false, validateFormats: false });
const routes = Object.entries(spec.paths).flatMap(([template, methods]) =>
  Object.entries(methods).map(([method, op]) => ({
    method: method.toUpperCase(),
    template,
    pattern: new RegExp(`^${template.replace(/\{(\w+)\}/g, "(?<$1>[^/]+)")}$`),
    op,
    body: op.requestBody ? ajv.compile(forAjv(op.requestBody) as Json) : undefined,
    params: new Map<string, ValidateFunction>(
      op.parameters.map((p) => [`${p.in}:${p.name}`, ajv.compile(forAjv(p.schema ?? {}) as Json)]),
    ),
  })),
);

const clone = <T>(x: T): T => structuredClone(x);

export interface FakePull {
  number: number;
  owner: string;
  repo: string;
  head: string;
  base: string;
  title: string;
  body: string;
  draft: boolean;
  state: "open" | "closed";
  merged: boolean;
  labels: string[];
  headSha: string;
}

export interface FakeComment {
  owner: string;
  repo: string;
  issue: number;
  body: string;
  user: string;
}

export class FakeGitHub {
  readonly root = tempDir("fake-github");
  readonly violations: string[] = [];
  readonly calls: { operationId: string; body: unknown }[] = [];
  /** Every Authorization header git or the API presented, to prove where the token went. */
  readonly authorizations: string[] = [];
  readonly pulls: FakePull[] = [];
  readonly comments: FakeComment[] = [];
  readonly issues = new Map<string, { title: string; body: string; comments: FakeComment[] }>();
  readonly statuses = new Map<string, { state: "success" | "pending" | "failure"; context: string }[]>();
  private server!: Server;
  private readonly children = new Set<ChildProcess>();
  url = "";

  constructor(readonly token: string) {}

  /** Installation tokens this GitHub handed out to the app (they work as tokens, for an hour). */
  readonly installationTokens = new Set<string>();
  private app: { id: string; publicKey: KeyObject } | undefined;

  /** Lets a GitHub App with this id and key act here (its JWTs are checked against the key). */
  enableApp(id: string, publicKey: KeyObject): void {
    this.app = { id, publicKey };
  }

  private accepts(token: string | undefined): boolean {
    return token !== undefined && (token === this.token || this.installationTokens.has(token));
  }

  /** An RS256 JWT signed by the app's key, issued by the app, not expired: as GitHub checks it. */
  private validAppJwt(jwt: string | undefined): boolean {
    if (!this.app || !jwt) return false;
    const [h, p, sig] = jwt.split(".");
    if (!h || !p || !sig) return false;
    if (!verify("RSA-SHA256", Buffer.from(`${h}.${p}`), this.app.publicKey, Buffer.from(sig, "base64url")))
      return false;
    const claims = JSON.parse(Buffer.from(p, "base64url").toString()) as { iss?: unknown; exp?: number };
    return String(claims.iss) === this.app.id && (claims.exp ?? 0) * 1000 > Date.now();
  }

  get apiUrl(): string {
    return `${this.url}/api/v3`;
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((e) => {
        this.violations.push(`server error: ${(e as Error).stack}`);
        res.writeHead(500).end();
      });
    });
    await new Promise<void>((ok) => this.server.listen(0, "127.0.0.1", ok));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    for (const c of this.children) c.kill("SIGKILL");
    this.server.closeAllConnections();
    await new Promise<void>((ok) => this.server.close(() => ok()));
  }

  /** A repository with one commit on main, as a bare repository git http-backend serves. */
  createRepo(
    owner: string,
    name: string,
    files: Record<string, string> = { "README.md": "# remote\n" },
  ): string {
    const bare = join(this.root, owner, `${name}.git`);
    mkdirSync(bare, { recursive: true });
    execFileSync("git", ["init", "-q", "--bare", "-b", "main", bare]);
    const work = tempDir("fake-github-seed");
    const env = {
      ...process.env,
      GIT_AUTHOR_NAME: "seed",
      GIT_AUTHOR_EMAIL: "seed@example.invalid",
      GIT_COMMITTER_NAME: "seed",
      GIT_COMMITTER_EMAIL: "seed@example.invalid",
    };
    execFileSync("git", ["init", "-q", "-b", "main", work]);
    for (const [p, c] of Object.entries(files)) {
      mkdirSync(join(work, p, ".."), { recursive: true });
      execFileSync("sh", ["-c", `cat > "$1"`, "sh", join(work, p)], { input: c });
    }
    execFileSync("git", ["add", "."], { cwd: work, env });
    execFileSync("git", ["commit", "-qm", "seed"], { cwd: work, env });
    execFileSync("git", ["push", "-q", bare, "main"], { cwd: work, env });
    return bare;
  }

  cloneUrl(owner: string, name: string): string {
    return `${this.url}/${owner}/${name}.git`;
  }

  /** The commit a branch of a repository points at, or null. */
  ref(owner: string, name: string, branch: string): string | null {
    try {
      return execFileSync("git", ["rev-parse", "--verify", "-q", `refs/heads/${branch}`], {
        cwd: join(this.root, owner, `${name}.git`),
        encoding: "utf8",
      }).trim();
    } catch {
      return null;
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", this.url);
    const auth = req.headers.authorization ?? "";
    if (auth) this.authorizations.push(auth);
    if (url.pathname.startsWith("/api/v3/")) return this.api(req, res, url, auth);
    if (url.pathname.startsWith("/api/v1/")) return this.gitea(req, res, url, auth);
    if (/^\/[^/]+\/[^/]+\.git\//.test(url.pathname)) return this.git(req, res, url, auth);
    res.writeHead(404).end();
  }

  /** Gitea's API, in FakeGitea; GitHub has none under /api/v1. */
  protected async gitea(_req: IncomingMessage, res: ServerResponse, _url: URL, _auth: string): Promise<void> {
    res.writeHead(404).end();
  }

  // ---- git over HTTP ----------------------------------------------------------------------------

  protected async git(req: IncomingMessage, res: ServerResponse, url: URL, auth: string): Promise<void> {
    const basic = /^Basic (.+)$/.exec(auth);
    const [, password] = basic ? Buffer.from(basic[1]!, "base64").toString().split(/:(.*)/s) : [];
    // A public repository: anyone may fetch, only the token may push.
    const pushing =
      url.searchParams.get("service") === "git-receive-pack" || url.pathname.endsWith("/git-receive-pack");
    if (pushing && !this.accepts(password)) {
      res.writeHead(401, { "www-authenticate": 'Basic realm="GitHub"' }).end();
      return;
    }
    const child = spawn("git", ["http-backend"], {
      env: {
        PATH: process.env.PATH,
        GIT_PROJECT_ROOT: this.root,
        GIT_HTTP_EXPORT_ALL: "1",
        PATH_INFO: url.pathname,
        QUERY_STRING: url.search.slice(1),
        REQUEST_METHOD: req.method ?? "GET",
        CONTENT_TYPE: req.headers["content-type"] ?? "",
        REMOTE_USER: "x-access-token",
        REMOTE_ADDR: "127.0.0.1",
        GIT_HTTP_MAX_REQUEST_BUFFER: "100M",
      },
    });
    this.children.add(child);
    child.on("exit", () => this.children.delete(child));
    const encoding = req.headers["content-encoding"];
    if (encoding === "gzip") req.pipe((await import("node:zlib")).createGunzip()).pipe(child.stdin);
    else req.pipe(child.stdin);
    // CGI: headers, a blank line, then the body.
    let head = Buffer.alloc(0);
    let sent = false;
    child.stdout.on("data", (chunk: Buffer) => {
      if (sent) return void res.write(chunk);
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      const headers: Record<string, string> = {};
      let status = 200;
      for (const line of head.subarray(0, end).toString().split("\r\n")) {
        const [k, ...v] = line.split(":");
        if (k!.toLowerCase() === "status") status = Number.parseInt(v.join(":").trim(), 10);
        else headers[k!] = v.join(":").trim();
      }
      res.writeHead(status, headers);
      sent = true;
      res.write(head.subarray(end + 4));
    });
    child.stdout.on("end", () => res.end());
  }

  // ---- REST API ---------------------------------------------------------------------------------

  private async api(req: IncomingMessage, res: ServerResponse, url: URL, auth: string): Promise<void> {
    const path = url.pathname.slice("/api/v3".length);
    const route = routes.find((r) => r.method === req.method && r.pattern.test(path));
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json; charset=utf-8" }).end(JSON.stringify(body));
    };
    if (!route) {
      this.violations.push(`${req.method} ${path}: not an operation Flotilla is described to call`);
      return send(404, { message: "Not Found", documentation_url: "https://docs.github.com/rest" });
    }
    const token = /^(?:token|bearer) (.+)$/i.exec(auth)?.[1];
    // A GitHub App's own calls carry its JWT; everything else a token (or an installation's).
    const asApp = route.op.operationId.startsWith("apps/");
    if (asApp ? !this.validAppJwt(token) : !this.accepts(token))
      return send(401, { message: "Bad credentials", documentation_url: "https://docs.github.com/rest" });
    const params = route.pattern.exec(path)!.groups ?? {};
    for (const p of route.op.parameters) {
      const raw =
        p.in === "path" ? params[p.name] : p.in === "query" ? url.searchParams.get(p.name) : undefined;
      if (raw === undefined || raw === null) {
        if (p.required) this.violations.push(`${route.op.operationId}: missing ${p.in} parameter ${p.name}`);
        continue;
      }
      const value =
        p.schema?.type === "integer" || p.schema?.type === "number"
          ? Number(raw)
          : p.schema?.type === "boolean"
            ? raw === "true"
            : decodeURIComponent(raw);
      const check = route.params.get(`${p.in}:${p.name}`)!;
      if (!check(value))
        this.violations.push(
          `${route.op.operationId}: ${p.in} ${p.name}=${raw}: ${ajv.errorsText(check.errors)}`,
        );
    }
    let body: unknown;
    if (route.body) {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const text = Buffer.concat(chunks).toString();
      body = text ? JSON.parse(text) : undefined;
      if (body === undefined && route.op.requestBodyRequired)
        this.violations.push(`${route.op.operationId}: the body is required and there is none`);
      else if (body !== undefined && !route.body(body))
        this.violations.push(`${route.op.operationId}: body ${ajv.errorsText(route.body.errors)}`);
    }
    this.calls.push({ operationId: route.op.operationId, body });
    const answer = this.answer(route.op, params, url, body as Json);
    send(answer.status, answer.body);
  }

  private example(op: Operation, status: string): Json {
    return clone(op.responses[status]?.example as Json);
  }

  private repoJson(op: Operation, owner: string, name: string): Json {
    const r = this.example(op, "200") ?? {};
    return {
      ...r,
      name,
      full_name: `${owner}/${name}`,
      default_branch: "main",
      clone_url: this.cloneUrl(owner, name),
      html_url: `${this.url}/${owner}/${name}`,
    };
  }

  private pullJson(p: FakePull): Json {
    const op = spec.paths["/repos/{owner}/{repo}/pulls/{pull_number}"]!.get!;
    const j = this.example(op, "200");
    const html = `${this.url}/${p.owner}/${p.repo}/pull/${p.number}`;
    return {
      ...j,
      id: 1000 + p.number,
      number: p.number,
      title: p.title,
      body: p.body,
      draft: p.draft,
      state: p.state,
      merged: p.merged,
      merged_at: p.merged ? new Date().toISOString() : null,
      html_url: html,
      url: `${this.apiUrl}/repos/${p.owner}/${p.repo}/pulls/${p.number}`,
      labels: p.labels.map((name, i) => ({ ...((j.labels as Json[])?.[0] ?? {}), id: i + 1, name })),
      head: { ...(j.head as Json), ref: p.head, sha: p.headSha, label: `${p.owner}:${p.head}` },
      base: { ...(j.base as Json), ref: p.base, label: `${p.owner}:${p.base}` },
      updated_at: new Date().toISOString(),
    };
  }

  private answer(
    op: Operation,
    params: Record<string, string>,
    url: URL,
    body: Json,
  ): { status: number; body: unknown } {
    const owner = params.owner!;
    const name = params.repo!;
    switch (op.operationId) {
      case "repos/get":
        return { status: 200, body: this.repoJson(op, owner, name) };
      case "pulls/list": {
        const head = url.searchParams.get("head");
        const state = url.searchParams.get("state") ?? "open";
        const list = this.pulls.filter(
          (p) =>
            p.owner === owner &&
            p.repo === name &&
            (!head || `${p.owner}:${p.head}` === head) &&
            (state === "all" || p.state === state),
        );
        return { status: 200, body: list.map((p) => this.pullJson(p)) };
      }
      case "pulls/create": {
        const headSha = this.ref(owner, name, String(body.head));
        if (!headSha || !this.ref(owner, name, String(body.base)))
          return {
            status: 422,
            body: {
              message: "Validation Failed",
              errors: [{ resource: "PullRequest", field: "head", code: "invalid" }],
              documentation_url: "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
            },
          };
        const p: FakePull = {
          number: this.pulls.length + this.issues.size + 1,
          owner,
          repo: name,
          head: String(body.head),
          base: String(body.base),
          title: String(body.title),
          body: String(body.body ?? ""),
          draft: body.draft === true,
          state: "open",
          merged: false,
          labels: [],
          headSha,
        };
        this.pulls.push(p);
        return { status: 201, body: this.pullJson(p) };
      }
      case "pulls/get": {
        const p = this.pulls.find(
          (x) => x.owner === owner && x.repo === name && x.number === Number(params.pull_number),
        );
        if (!p) return { status: 404, body: { message: "Not Found" } };
        p.headSha = this.ref(owner, name, p.head) ?? p.headSha;
        return { status: 200, body: this.pullJson(p) };
      }
      case "issues/add-labels": {
        const p = this.pulls.find(
          (x) => x.owner === owner && x.repo === name && x.number === Number(params.issue_number),
        );
        if (p) p.labels.push(...((body.labels as string[]) ?? []));
        const ex = (this.example(op, "200") as unknown as Json[])[0] ?? {};
        return { status: 200, body: (p?.labels ?? []).map((n, i) => ({ ...ex, id: i + 1, name: n })) };
      }
      case "repos/get-combined-status-for-ref": {
        const list = this.statuses.get(params.ref!) ?? [];
        const j = this.example(op, "200");
        const st0 = (j.statuses as Json[])[0]!;
        const state = list.some((s) => s.state === "failure")
          ? "failure"
          : list.some((s) => s.state === "pending") || list.length === 0
            ? "pending"
            : "success";
        return {
          status: 200,
          body: {
            ...j,
            sha: params.ref,
            state,
            total_count: list.length,
            statuses: list.map((s, i) => ({ ...st0, id: i + 1, state: s.state, context: s.context })),
          },
        };
      }
      case "checks/list-for-ref":
        return { status: 200, body: { total_count: 0, check_runs: [] } };
      case "issues/get": {
        const issue = this.issues.get(`${owner}/${name}#${params.issue_number}`);
        if (!issue) return { status: 404, body: { message: "Not Found" } };
        return {
          status: 200,
          body: {
            ...this.example(op, "200"),
            number: Number(params.issue_number),
            title: issue.title,
            body: issue.body,
            html_url: `${this.url}/${owner}/${name}/issues/${params.issue_number}`,
          },
        };
      }
      case "issues/list-comments": {
        const ex = (this.example(op, "200") as unknown as Json[])[0]!;
        const list = this.comments.filter(
          (c) => c.owner === owner && c.repo === name && c.issue === Number(params.issue_number),
        );
        return {
          status: 200,
          body: list.map((c, i) => ({
            ...ex,
            id: i + 1,
            body: c.body,
            user: { ...(ex.user as Json), login: c.user },
          })),
        };
      }
      case "issues/create-comment": {
        const c: FakeComment = {
          owner,
          repo: name,
          issue: Number(params.issue_number),
          body: String(body.body),
          user: "flotilla[bot]",
        };
        this.comments.push(c);
        const id = this.comments.length;
        return {
          status: 201,
          body: {
            ...this.example(op, "201"),
            id,
            body: c.body,
            html_url: `${this.url}/${owner}/${name}/issues/${c.issue}#issuecomment-${id}`,
          },
        };
      }
      case "apps/get-repo-installation":
        return { status: 200, body: { ...this.example(op, "200"), id: 42 } };
      case "apps/create-installation-access-token": {
        const token = `ghs_${randomBytes(18).toString("hex")}`;
        this.installationTokens.add(token);
        return {
          status: 201,
          body: {
            ...this.example(op, "201"),
            token,
            expires_at: new Date(Date.now() + 3600_000).toISOString(),
          },
        };
      }
      default:
        this.violations.push(`${op.operationId}: described, but this fake does not answer it yet`);
        return { status: 501, body: { message: "not in the fake" } };
    }
  }
}

/** The control plane's settings for a loopback forge (`config.forges` of a test server). */
export function forgeSettings(forge: FakeGitHub, name: string, type: "github" | "gitea" = "github") {
  return {
    name,
    type,
    apiUrl: forge.apiUrl,
    hosts: [new URL(forge.url).host],
    token: forge.token,
    app: undefined,
    webhookSecret: `${name}-hook-secret`,
    commandAssociations: ["OWNER", "MEMBER", "COLLABORATOR"],
    labels: ["flotilla"],
  };
}
