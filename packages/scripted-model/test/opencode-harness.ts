import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const OPENCODE_BIN = resolve(import.meta.dirname, "../../../node_modules/.bin/opencode");

export interface OpencodeHarness {
  baseUrl: string;
  /** Temp git repo the server runs in (its default directory). */
  repo: string;
  headers: Record<string, string>;
  /** stdout+stderr so far, for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

/** A fresh git repo with one commit: OpenCode treats the git root as the project. */
async function makeRepo(root: string): Promise<string> {
  const repo = join(root, "repo");
  await mkdir(repo, { recursive: true });
  await writeFile(join(repo, "README.md"), "# scratch repo\n");
  const git = (...args: string[]) =>
    execFileSync("git", args, {
      cwd: repo,
      stdio: "ignore",
      env: {
        ...process.env,
        GIT_AUTHOR_NAME: "t",
        GIT_AUTHOR_EMAIL: "t@example.invalid",
        GIT_COMMITTER_NAME: "t",
        GIT_COMMITTER_EMAIL: "t@example.invalid",
      },
    });
  git("init", "-q", "-b", "main");
  git("add", ".");
  git("commit", "-q", "-m", "init");
  return repo;
}

async function waitHealthy(baseUrl: string, headers: Record<string, string>, child: ChildProcess) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`opencode exited with ${child.exitCode}`);
    try {
      // Early requests can hang forever, so every probe gets its own short timeout.
      const res = await fetch(`${baseUrl}/global/health`, { headers, signal: AbortSignal.timeout(500) });
      if (res.ok) return;
    } catch {
      // not ready yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error("opencode did not become healthy within 30 s");
}

export async function startOpencode(modelUrl: string): Promise<OpencodeHarness> {
  const root = await mkdtemp(join(tmpdir(), "scripted-model-oc-"));
  const repo = await makeRepo(root);
  const password = randomBytes(16).toString("hex");
  const headers = { Authorization: `Basic ${Buffer.from(`opencode:${password}`).toString("base64")}` };
  const config = {
    model: "scripted/scripted-1",
    small_model: "scripted/scripted-1",
    enabled_providers: ["scripted"],
    provider: {
      scripted: {
        npm: "@ai-sdk/openai-compatible",
        options: { baseURL: modelUrl, apiKey: "unused" },
        models: { "scripted-1": { name: "Scripted", tool_call: true } },
      },
    },
    permission: {
      edit: "allow",
      bash: "allow",
      external_directory: "deny",
      doom_loop: "deny",
      question: "deny",
    },
  };
  const xdg = (name: string) => join(root, "xdg", name);
  const child = spawn(OPENCODE_BIN, ["serve", "--hostname", "127.0.0.1", "--port", "0"], {
    cwd: repo,
    // Own process group so stop() can kill opencode and everything it spawned (bash tool, git).
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      XDG_DATA_HOME: xdg("data"),
      XDG_CONFIG_HOME: xdg("config"),
      XDG_STATE_HOME: xdg("state"),
      XDG_CACHE_HOME: xdg("cache"),
      OPENCODE_SERVER_PASSWORD: password,
      OPENCODE_DISABLE_AUTOUPDATE: "1",
      OPENCODE_DISABLE_MODELS_FETCH: "1",
      OPENCODE_DISABLE_LSP_DOWNLOAD: "1",
      OPENCODE_CONFIG_CONTENT: JSON.stringify(config),
    },
  });
  let out = "";
  const stop = async () => {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {
        // already gone
      }
      const timer = setTimeout(() => {
        try {
          if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }, 3000);
      await exited;
      clearTimeout(timer);
    }
    await rm(root, { recursive: true, force: true, maxRetries: 3 });
  };
  try {
    const baseUrl = await new Promise<string>((resolveUrl, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "listening on" line in 30 s:\n${out}`)), 30_000);
      const onData = (buf: Buffer) => {
        out += buf.toString();
        const m = /listening on (http:\/\/[^\s]+)/.exec(out);
        if (m?.[1]) {
          clearTimeout(timer);
          resolveUrl(m[1].replace(/\/$/, ""));
        }
      };
      child.stdout?.on("data", onData);
      child.stderr?.on("data", (buf: Buffer) => {
        out += buf.toString();
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`opencode exited early (${code}):\n${out}`));
      });
    });
    await waitHealthy(baseUrl, headers, child);
    return { baseUrl, repo, headers, output: () => out, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
