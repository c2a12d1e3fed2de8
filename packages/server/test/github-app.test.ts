import { execFileSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeGitHub, forgeSettings } from "../../../test/github/fake-github.ts";
import { tempDir } from "../../../test/support.ts";
import { GitHubForge } from "../src/integrations/forges/github.ts";

// A GitHub App instead of a token: the forge signs a JWT with the app's key, finds the app's
// installation on the repository, and acts with the hour-long installation token it gets for it.
let gh: FakeGitHub;
let forge: GitHubForge;
const repo = { owner: "acme", name: "gadget" };

beforeAll(async () => {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  gh = new FakeGitHub("a-personal-token-the-app-never-uses");
  await gh.start();
  gh.enableApp("31337", publicKey);
  const bare = gh.createRepo(repo.owner, repo.name);
  // A branch to propose, pushed straight into the bare repository.
  const work = tempDir("app-branch");
  const g = (...args: string[]) =>
    execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@example.invalid", ...args], { cwd: work });
  g("clone", "-q", bare, ".");
  g("checkout", "-q", "-b", "flotilla/ses_app");
  execFileSync("sh", ["-c", "echo app > app.txt"], { cwd: work });
  g("add", ".");
  g("commit", "-qm", "from the app");
  g("push", "-q", "origin", "flotilla/ses_app");
  forge = new GitHubForge({
    ...forgeSettings(gh, "github"),
    token: undefined,
    app: { id: "31337", privateKey: privateKey.export({ type: "pkcs1", format: "pem" }).toString() },
  });
});
afterAll(async () => {
  await gh?.close();
});

describe("a forge authenticated as a GitHub App", () => {
  it("pushes with an installation token, never the app's key, and opens pull requests with one", async () => {
    const creds = await forge.gitCredentials(repo);
    expect(creds.username).toBe("x-access-token");
    expect(gh.installationTokens.has(creds.password)).toBe(true);

    const pr = await forge.openPullRequest(repo, {
      head: "flotilla/ses_app",
      base: "main",
      title: "From the app",
      body: "made by an app",
      draft: true,
      labels: [],
    });
    expect(pr).toMatchObject({ number: 1, draft: true, head: "flotilla/ses_app", state: "open" });
    // The app's JWT only ever reached the app's own endpoints; the rest went with installation tokens.
    const jwtCalls = gh.authorizations.filter((a) => /^bearer [\w-]+\.[\w-]+\.[\w-]+$/i.test(a));
    expect(jwtCalls.length).toBeGreaterThan(0);
    const ops = gh.calls.map((c) => c.operationId);
    expect(ops).toContain("apps/get-repo-installation");
    expect(ops).toContain("apps/create-installation-access-token");
    expect(ops).toContain("pulls/create");
    expect(gh.violations).toEqual([]);
  });
});
