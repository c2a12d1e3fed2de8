import { ErrorInfo } from "@flotilla/contracts";
import { createLogger } from "@flotilla/server";
import { describe, expect, it } from "vitest";
import { createTestDb } from "../../../test/support.ts";
import { migrate } from "../src/platform/db/migrate.ts";
import { createPool } from "../src/platform/db/pool.ts";
import { claimNext } from "../src/tasks/claim.ts";

// The rows every seeded session stands on: an org, its project, a shard and a workspace.
const WORKSPACE = `
  insert into orgs (id, name) values ('org_1', 'o');
  insert into projects (id, org_id, repo) values ('prj_1', 'org_1', '/r');
  insert into shards (id, org_id, project_id, dir, runtime, network) values ('shd_1', 'org_1', 'prj_1', '/s', 'local', 'open');
  insert into workspaces (id, org_id, project_id, kind, repo, path, state_dir, base_ref, base_commit, shard_id)
    values ('wsp_1', 'org_1', 'prj_1', 'worktree', '/r', '/w', '/s', 'main', 'abc', 'shd_1');`;

describe("migrations", () => {
  it("two processes booting at once against one database apply each migration exactly once", async () => {
    const url = await createTestDb();
    const a = createPool(url, 2);
    const b = createPool(url, 2);
    const log = createLogger("silent");
    try {
      const [x, y] = await Promise.all([migrate(a, log), migrate(b, log)]);
      // One of them applied everything, the other found nothing left to do.
      expect([x, y].sort()).toEqual([0, x + y].sort());
      expect(x + y).toBeGreaterThan(0);
      const rows = (await a.query("select version from schema_migrations order by version")).rows;
      expect(rows.map((r) => r.version)).toEqual([...new Set(rows.map((r) => r.version))]);
      expect(await migrate(a, log)).toBe(0);
    } finally {
      await a.end();
      await b.end();
    }
  });

  it("013 rewrites failures stored before the list was closed into its kinds, each with retriable; 014 adds turn.finished's status", async () => {
    const url = await createTestDb();
    const db = createPool(url, 2);
    const log = createLogger("silent");
    try {
      await migrate(db, log, { through: 12 });
      // What older releases stored: free names, API codes, OpenCode's own names, and no `retriable`.
      await db.query(`
        ${WORKSPACE}
        insert into tokens (id, org_id, name, role, hash, prefix) values ('tok_1', 'org_1', 't', 'admin', 'h', 'p');
        insert into sessions (id, org_id, project_id, workspace_id, title, status, model, permission, error)
          values ('ses_1', 'org_1', 'prj_1', 'wsp_1', 't', 'failed', 'm', '{}',
                  '{"name": "repo_not_found", "message": "no repository at /r"}');
        insert into events (session_id, seq, id, type, data) values
          ('ses_1', 1, 'evt_1', 'error', '{"name": "UnknownError", "message": "Model not found: x/y"}'),
          ('ses_1', 2, 'evt_2', 'turn.finished', '{"outcome": "interrupted", "error": {"name": "HarnessLost", "message": "gone"}}'),
          ('ses_1', 3, 'evt_3', 'session.status', '{"status": "failed", "error": {"name": "session_busy", "message": "busy"}}'),
          ('ses_1', 4, 'evt_4', 'session.status', '{"status": "idle"}'),
          ('ses_1', 5, 'evt_5', 'text.delta', '{"messageId": "m", "partId": "p", "delta": "name"}');
        insert into tasks (id, org_id, project_id, token_id, repo, base_ref, prompt, model, permission, timeout_ms,
                           max_attempts, state, error)
          values ('tsk_1', 'org_1', 'prj_1', 'tok_1', '/r', 'main', 'p', 'm', '{}', 1000, 2, 'failed',
                  '{"name": "AttemptError", "message": "boom"}');
        insert into task_attempts (task_id, n, replica, lease_expires_at, error)
          values ('tsk_1', 1, 'r', now(), '{"name": "harness_unavailable", "message": "no room"}');
      `);
      expect(await migrate(db, log)).toBeGreaterThan(0);

      const one = async (sql: string) => (await db.query(sql)).rows[0]!.e;
      const stored = {
        session: await one("select error as e from sessions"),
        agent: await one("select data as e from events where seq = 1"),
        lost: await one("select data->'error' as e from events where seq = 2"),
        busy: await one("select data->'error' as e from events where seq = 3"),
        task: await one("select error as e from tasks"),
        attempt: await one("select error as e from task_attempts"),
      };
      // Each is now a member of the union, as the API describes it.
      for (const [where, e] of Object.entries(stored))
        expect(ErrorInfo.safeParse(e).success, where).toBe(true);
      expect(stored).toEqual({
        session: { name: "RepositoryUnavailable", message: "no repository at /r", retriable: false },
        agent: {
          name: "AgentError",
          message: "Model not found: x/y",
          retriable: false,
          detail: "UnknownError",
        },
        lost: { name: "HarnessLost", message: "gone", retriable: true },
        busy: { name: "Refused", message: "busy", retriable: true, detail: "session_busy" },
        task: { name: "InternalError", message: "boom", retriable: false },
        attempt: { name: "HarnessUnavailable", message: "no room", retriable: true },
      });
      // 014: a turn.finished written before says what it left the session in, from its outcome.
      expect(await one("select data->>'status' as e from events where seq = 2")).toBe("interrupted");
      // Events without a failure are untouched.
      expect(await one("select data as e from events where seq = 4")).toEqual({ status: "idle" });
      expect(await one("select data as e from events where seq = 5")).toEqual({
        messageId: "m",
        partId: "p",
        delta: "name",
      });
    } finally {
      await db.end();
    }
  });

  it("015 moves a session's turn into one column: a running turn with its prompt id and open requests, a pending prompt", async () => {
    const url = await createTestDb();
    const db = createPool(url, 2);
    const log = createLogger("silent");
    try {
      await migrate(db, log, { through: 14 });
      await db.query(`
        ${WORKSPACE}
        insert into sessions (id, org_id, project_id, workspace_id, title, status, model, permission, turn_message_id, turn_started_at)
          values ('ses_run', 'org_1', 'prj_1', 'wsp_1', 't', 'waiting_permission', 'm', '{}', 'msg_9', '2026-01-01T00:00:00Z');
        insert into sessions (id, org_id, project_id, workspace_id, title, status, model, permission, pending_prompt)
          values ('ses_new', 'org_1', 'prj_1', 'wsp_1', 't', 'failed', 'm', '{}', 'fix it');
        insert into sessions (id, org_id, project_id, workspace_id, title, status, model, permission, turn_message_id)
          values ('ses_idle', 'org_1', 'prj_1', 'wsp_1', 't', 'idle', 'm', '{}', 'msg_1');
        insert into permission_requests (id, session_id, permission, patterns, metadata, status)
          values ('per_1', 'ses_run', 'bash', '[]', '{}', 'pending'), ('per_0', 'ses_run', 'edit', '[]', '{}', 'replied');
      `);
      await migrate(db, log);
      const turn = async (id: string) =>
        (await db.query("select turn from sessions where id = $1", [id])).rows[0]!.turn;
      expect(await turn("ses_run")).toEqual({
        phase: "running",
        messageId: "msg_9",
        startedAt: Date.parse("2026-01-01T00:00:00Z"),
        abortRequested: false,
        waiting: ["per_1"],
      });
      expect(await turn("ses_new")).toEqual({ phase: "pending", prompt: "fix it" });
      expect(await turn("ses_idle")).toBeNull();
      const cols = await db.query(
        "select column_name from information_schema.columns where table_name = 'sessions' and column_name in ('pending_prompt', 'turn_message_id', 'turn_started_at')",
      );
      expect(cols.rows).toEqual([]);
    } finally {
      await db.end();
    }
  });

  it("016 gives the tasks running when it is applied their slots, so a claim right after still keeps the limits", async () => {
    const url = await createTestDb();
    const db = createPool(url, 2);
    const log = createLogger("silent");
    try {
      await migrate(db, log, { through: 15 });
      const task = (id: string, state: string) =>
        `insert into tasks (id, org_id, project_id, token_id, repo, base_ref, prompt, model, permission, timeout_ms, max_attempts, state)
           values ('${id}', 'org_1', 'prj_1', 'tok_1', '/r', 'HEAD', 'p', 'm/m', '"allow"', 60000, 3, '${state}');`;
      await db.query(`
        insert into orgs (id, name) values ('org_1', 'o');
        insert into projects (id, org_id, repo) values ('prj_1', 'org_1', '/r');
        insert into tokens (id, org_id, name, role, hash, prefix) values ('tok_1', 'org_1', 't', 'member', 'h', 'p');
        ${task("tsk_a", "running")} ${task("tsk_b", "running")} ${task("tsk_c", "queued")} ${task("tsk_d", "succeeded")}
      `);
      await migrate(db, log);
      const slots = await db.query("select scope, idx, task_id from claim_slots order by scope, idx");
      expect(slots.rows).toEqual(
        ["all", "project:prj_1", "token:tok_1"].flatMap((scope) => [
          { scope, idx: 1, task_id: "tsk_a" },
          { scope, idx: 2, task_id: "tsk_b" },
        ]),
      );
      const limits = { maxConcurrent: 4, perProject: 4, perToken: 2 };
      expect(await claimNext(db, "r", limits, 60_000)).toBeNull();
      await db.query("update tasks set state = 'failed' where id = 'tsk_a'");
      expect((await claimNext(db, "r", limits, 60_000))?.task.id).toBe("tsk_c");
      const held = await db.query(
        "select task_id, count(*)::int as n from claim_slots where task_id is not null group by task_id order by task_id",
      );
      expect(held.rows).toEqual([
        { task_id: "tsk_b", n: 3 },
        { task_id: "tsk_c", n: 3 },
      ]);
    } finally {
      await db.end();
    }
  });
});
