import { execFileSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  collectUntil,
  makeRepo,
  startTestServer,
  type TestServer,
  untilTurnFinished,
  waitFor,
} from "../../../test/support.ts";
import { scenario } from "./scenario.ts";

let t: TestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

interface WarmRow {
  id: string;
  path: string;
  base_commit: string;
  branch: string;
  shard_id: string;
}

const warmOf = async (server: TestServer, repo: string): Promise<WarmRow[]> =>
  (
    await server.server.services.db.query<WarmRow>(
      `select w.id, w.path, w.base_commit, w.branch, w.shard_id from workspaces w
       where w.repo = $1 and w.warm_at is not null and w.deleted_at is null order by w.warm_at`,
      [repo],
    )
  ).rows;

const head = (repo: string) =>
  execFileSync("git", ["rev-parse", "HEAD"], { cwd: repo, encoding: "utf8" }).trim();

// The server's log says when a warm workspace is ready (its directory set up too, when the shard's
// harness runs): what the tests wait on, rather than the row alone.
const readyLogged = async (server: TestServer, workspaceId: string) => {
  const { readFileSync } = await import("node:fs");
  return readFileSync(server.logFile, "utf8")
    .split("\n")
    .some(
      (l) => l.includes('"warm workspace ready"') && l.includes(workspaceId) && l.includes('"warmedUp":true'),
    );
};

describe("warm workspaces", () => {
  it("a hot project's next session takes a checkout made ahead, gets its own branch, and works in it; another is made", async () => {
    t = await startTestServer({ scenario, pool: { warmWorkspaces: 1, tickMs: 300 } });
    const repo = makeRepo();
    // The first session makes the project hot; nothing is warm before it.
    expect(await warmOf(t, repo)).toHaveLength(0);
    const first = await t.client.sessions.create({ repo, prompt: "hello" });
    await collectUntil(t.client, first.id, untilTurnFinished());
    const [warm] = await waitFor(
      async () => {
        const rows = await warmOf(t!, repo);
        return rows.length === 1 && (await readyLogged(t!, rows[0]!.id)) ? rows : undefined;
      },
      60_000,
      "a warm workspace of the hot project",
    );
    expect(warm!.base_commit).toBe(head(repo));
    // On the shard whose harness serves the project: its directory is set up by that harness.
    expect(warm!.shard_id).toBe(first.shardId);
    expect(existsSync(join(warm!.path, "README.md"))).toBe(true);
    // Its throwaway first turn went to the warm-up model, not to the session's provider, and left no
    // session behind in the harness; the warm-up model is offered to no one.
    const asked = t.model.requests.length;
    expect(t.model.requests.every((r) => !JSON.stringify(r.messages).includes("warm-up"))).toBe(true);
    const h = t.server.services.harnesses.forShard(warm!.shard_id)!;
    const left = await h.client.session.list({ directory: warm!.path }, { throwOnError: true });
    expect(left.data.map((x) => x.title)).not.toContain("flotilla warm-up");
    expect((await t.client.models()).models.map((m) => m.provider)).not.toContain("flotilla-warmup");
    // A warm checkout is not a leftover.
    const gc = await t.client.gc();
    expect(gc.items.map((l) => l.id)).not.toContain(warm!.id);

    const second = await t.client.sessions.create({ repo, prompt: "write hello" });
    expect(second.workspaceId).toBe(warm!.id);
    expect(second.baseCommit).toBe(head(repo));
    expect(second.branch).toBe(`flotilla/${second.id}`);
    const events = await collectUntil(t.client, second.id, untilTurnFinished());
    const finished = events.find((e) => e.type === "turn.finished");
    expect(finished?.type === "turn.finished" && finished.data.status).toBe("idle");
    // The checkout is the session's now: its branch, its change, no longer warm.
    const branch = (
      await t.server.services.sessions.git(await sessionWorkspace(t, second.id))([
        "rev-parse",
        "--abbrev-ref",
        "HEAD",
      ])
    ).stdout.trim();
    expect(branch).toBe(`flotilla/${second.id}`);
    // Its one model request was its own turn's.
    expect(t.model.requests.length).toBe(asked + 2);
    const diff = await t.client.sessions.diff(second.id);
    expect(diff.files.map((f) => f.path)).toEqual(["hello.txt"]);
    expect((await warmOf(t, repo)).map((w) => w.id)).not.toContain(warm!.id);
    // The project is still hot: another is made for the session after.
    const next = await waitFor(
      async () => {
        const rows = await warmOf(t!, repo);
        return rows.length === 1 ? rows[0] : undefined;
      },
      60_000,
      "the next warm workspace",
    );
    expect(next.id).not.toBe(warm!.id);

    // Turned off, the next start removes what was left warm (nothing would claim it any more).
    t.server.services.config.pool.warmWorkspaces = 0;
    await t.restart();
    await waitFor(
      async () => ((await warmOf(t!, repo)).length === 0 ? true : undefined),
      60_000,
      "the warm workspace removed after a restart with warm workspaces off",
    );
    await t.server.services.warmWorkspaces.kick();
    expect(existsSync(next.path)).toBe(false);
  });

  it("when the base moves, a session takes the new HEAD and the stale checkout is replaced", async () => {
    t = await startTestServer({ scenario, pool: { warmWorkspaces: 1, tickMs: 300 } });
    const repo = makeRepo();
    const first = await t.client.sessions.create({ repo, prompt: "hello" });
    await collectUntil(t.client, first.id, untilTurnFinished());
    const [stale] = await waitFor(
      async () => {
        const rows = await warmOf(t!, repo);
        return rows.length === 1 ? rows : undefined;
      },
      60_000,
      "a warm workspace",
    );
    const before = stale!.base_commit;
    writeFileSync(join(repo, "CHANGELOG.md"), "moved\n");
    execFileSync("git", ["add", "-A"], { cwd: repo });
    execFileSync("git", ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "move"], {
      cwd: repo,
    });
    const moved = head(repo);
    expect(moved).not.toBe(before);
    // Asked for at once, before the pool has noticed: the session resolves HEAD itself.
    const s = await t.client.sessions.create({ repo, prompt: "hello" });
    expect(s.baseCommit).toBe(moved);
    expect(s.workspaceId).not.toBe(stale!.id);
    await collectUntil(t.client, s.id, untilTurnFinished());
    const fresh = await waitFor(
      async () => {
        const rows = await warmOf(t!, repo);
        return rows.length === 1 && rows[0]!.base_commit === moved ? rows[0] : undefined;
      },
      60_000,
      "a warm workspace at the new HEAD",
    );
    expect(fresh.id).not.toBe(stale!.id);
    // The stale one is gone from disk and marked deleted.
    expect(existsSync(stale!.path)).toBe(false);
    const { rows } = await t.server.services.db.query("select deleted_at from workspaces where id = $1", [
      stale!.id,
    ]);
    expect(rows[0].deleted_at).not.toBeNull();
    // An older base asked for by name is made the usual way, never from the HEAD checkout.
    const old = await t.client.sessions.create({ repo, prompt: "hello", baseRef: before });
    expect(old.baseCommit).toBe(before);
    expect(old.workspaceId).not.toBe(fresh.id);
    await collectUntil(t.client, old.id, untilTurnFinished());
  });

  it("a project that is no longer hot keeps nothing warm", async () => {
    t = await startTestServer({ scenario, pool: { warmWorkspaces: 1, tickMs: 300 } });
    const repo = makeRepo();
    const first = await t.client.sessions.create({ repo, prompt: "hello" });
    await collectUntil(t.client, first.id, untilTurnFinished());
    const [warm] = await waitFor(
      async () => {
        const rows = await warmOf(t!, repo);
        return rows.length === 1 ? rows : undefined;
      },
      60_000,
      "a warm workspace",
    );
    // Its last session an hour ago (pool.hotMs is 30 minutes): the project is cold.
    await t.server.services.db.query(
      "update sessions set created_at = now() - interval '1 hour' where project_id = $1",
      [first.projectId],
    );
    await waitFor(
      async () => ((await warmOf(t!, repo)).length === 0 ? true : undefined),
      60_000,
      "the warm workspace removed",
    );
    // The pass that took it out of reach also removes it from disk (kick() joins a running pass).
    await t.server.services.warmWorkspaces.kick();
    expect(existsSync(warm!.path)).toBe(false);
    // Nothing is made again while it stays cold (a few passes of the pool).
    await t.server.services.warmWorkspaces.kick();
    await t.server.services.warmWorkspaces.kick();
    expect(await warmOf(t, repo)).toHaveLength(0);
  });
});

async function sessionWorkspace(server: TestServer, id: string) {
  const { rows } = await server.server.services.db.query(
    `select w.path, sh.id as shard_id, sh.dir as shard_dir, sh.runtime as shard_runtime, sh.network as shard_network
     from sessions s join workspaces w on w.id = s.workspace_id join shards sh on sh.id = w.shard_id where s.id = $1`,
    [id],
  );
  return rows[0];
}
