import { existsSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { join } from "node:path";
import { FlotillaError, type SessionEvent } from "@flotilla/client";
import {
  createLogger,
  type EmbeddedDb,
  postgresOutsideDir,
  runningPostgres,
  startEmbeddedPostgres,
} from "@flotilla/server";
import { afterAll, describe, expect, it } from "vitest";
import {
  assertGapFree,
  collectUntil,
  makeRepo,
  startTestServer,
  type TestServer,
  tempDir,
  untilTurnFinished,
  waitFor,
} from "../../../test/support.ts";
import { isConnectionError } from "../src/platform/db/health.ts";

/**
 * The database dies under a running turn (kill -9 of Postgres): the control plane stays up, says
 * it is not ready while the database is away, and once it is back the turn ends and the session's
 * log holds every event of it, gap-free, the whole reply included; a task refused while it was
 * away (503, not a hang) is run when submitted again. Twice: with an external database the test
 * itself brings back (a DATABASE_URL that fails over), and with the control plane's own embedded
 * Postgres, which the control plane starts again itself.
 *
 * The first uses a Postgres of its own, not the run's shared one: killing that would break every
 * other file running beside this one.
 */

const SLOW = Array.from({ length: 60 }, (_, i) => `w${i}`).join(" ");
const scenario = {
  rules: [{ match: "^slow", steps: [{ text: SLOW, chunkDelayMs: 100 }] }],
  default: [{ text: "ok" }],
};

/** As root a cluster may live outside its home (platform/db/embedded.ts): that goes too. */
function removeCluster(home: string): void {
  const outside = postgresOutsideDir(home);
  if (existsSync(outside)) rmSync(outside, { recursive: true, force: true });
  rmSync(home, { recursive: true, force: true });
}

/** Every event of the session from the start, live, until its first turn ends (reconnecting as needed). */
function follow(t: TestServer, sessionId: string) {
  const seen: SessionEvent[] = [];
  const done = collectUntil(
    t.client,
    sessionId,
    (e, all) => {
      seen.push(e);
      return untilTurnFinished()(e, all);
    },
    { timeoutMs: 240_000 },
  );
  return { seen, done };
}

async function readyz(t: TestServer): Promise<{ status: number; body: { ready: boolean; reason?: string } }> {
  const res = await fetch(`${t.server.url}/readyz`);
  return { status: res.status, body: (await res.json()) as { ready: boolean; reason?: string } };
}

/**
 * The reply, whole, in the log: its deltas add up to it and its completion says it; some of it was
 * stored after the kill (the turn really ran through the outage: stored late, not lost).
 */
function assertComplete(events: SessionEvent[], killedAt: number): void {
  assertGapFree(events);
  expect(events.some((e) => e.type === "text.delta" && Date.parse(e.at) < killedAt)).toBe(true);
  expect(events.some((e) => e.type === "text.delta" && Date.parse(e.at) > killedAt)).toBe(true);
  const deltas = events.flatMap((e) => (e.type === "text.delta" ? [e.data.delta] : [])).join("");
  const completed = events.flatMap((e) => (e.type === "text.completed" ? [e.data.text] : []));
  expect(deltas.trim()).toBe(SLOW);
  expect(completed.map((x) => x.trim())).toContain(SLOW);
  const finished = events.filter((e) => e.type === "turn.finished");
  expect(finished).toHaveLength(1);
  expect(finished[0]!.type === "turn.finished" && finished[0]!.data.outcome).toBe("success");
}

async function taskRuns(t: TestServer, repo: string): Promise<void> {
  const { task } = await t.client.tasks.submit({ repo, prompt: "quick one" });
  const done = await waitFor(
    async () => {
      const x = await t.client.tasks.get(task.id);
      return ["succeeded", "failed", "cancelled", "timed_out", "dead"].includes(x.state) ? x : undefined;
    },
    180_000,
    `task ${task.id} to finish`,
  );
  expect(done.state).toBe("succeeded");
}

describe("isConnectionError", () => {
  it("tells a database that is away from a statement it refused", () => {
    const pgError = (code: string, message = "x") => Object.assign(new Error(message), { code });
    for (const away of [
      pgError("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:5432"),
      pgError("ECONNRESET"),
      pgError("57P01", "terminating connection due to administrator command"),
      pgError("57P03", "the database system is starting up"),
      pgError("08006"),
      new Error("Connection terminated unexpectedly"),
      new Error("timeout exceeded when trying to connect"),
      new AggregateError([pgError("ECONNREFUSED")]),
    ])
      expect(isConnectionError(away)).toBe(true);
    for (const refused of [pgError("23505", "duplicate key"), pgError("42601", "syntax error"), "text", null])
      expect(isConnectionError(refused)).toBe(false);
  });
});

describe("an external database that dies mid-turn and comes back", () => {
  let pgHome: string;
  let pg: EmbeddedDb;
  let t: TestServer | undefined;

  afterAll(async () => {
    await t?.close();
    await pg?.stop();
    if (pgHome) removeCluster(pgHome);
  }, 120_000);

  it("keeps the control plane up, not ready while it is away, and loses nothing", async () => {
    pgHome = tempDir("pg-restart");
    pg = await startEmbeddedPostgres(pgHome, createLogger("warn"));
    t = await startTestServer({ scenario, database: pg.url });
    const server = t.server;
    const repo = makeRepo();
    expect((await readyz(t)).status).toBe(200);

    const s = await t.client.sessions.create({ repo, prompt: "slow please" });
    const live = follow(t, s.id);
    await waitFor(async () => live.seen.some((e) => e.type === "text.delta"), 180_000, "the reply to stream");

    const killed = pg.pid;
    const killedAt = Date.now();
    process.kill(killed, "SIGKILL");
    const away = await waitFor(
      async () => {
        const r = await readyz(t!);
        return r.status === 503 ? r : undefined;
      },
      60_000,
      "/readyz to say not ready",
    );
    expect(away.body.ready).toBe(false);
    expect(away.body.reason).toMatch(/database/);

    // Work asked for while the database is away is refused at once, and says why.
    const refused = await t.client.tasks.submit({ repo, prompt: "quick one" }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(FlotillaError);
    expect((refused as FlotillaError).code).toBe("database_unavailable");
    expect((refused as FlotillaError).status).toBe(503);

    // The failover: the database comes back where it was (its orphaned backends may hold it for a moment).
    await waitFor(() => pg.revive().then(() => true), 60_000, "postgres to start again");
    expect(pg.pid).not.toBe(killed);
    await waitFor(async () => (await readyz(t!)).status === 200, 60_000, "/readyz to say ready again");

    // The same control plane, alive throughout.
    expect(t.server).toBe(server);
    expect((await fetch(`${t.server.url}/healthz`)).status).toBe(200);

    // The live stream saw every event, and so does a reading from the start.
    const streamed = await live.done;
    assertComplete(streamed, killedAt);
    const stored = await collectUntil(t.client, s.id, untilTurnFinished());
    assertComplete(stored, killedAt);
    expect(stored.map((e) => e.id)).toEqual(streamed.map((e) => e.id));
    expect((await t.client.sessions.get(s.id)).status).toBe("idle");

    await taskRuns(t, repo);
  });
});

describe("the control plane's own embedded Postgres, killed mid-turn", () => {
  let t: TestServer | undefined;

  afterAll(async () => {
    const home = t?.home;
    await t?.close();
    if (home) removeCluster(home);
  }, 120_000);

  it("is started again by the control plane, and the session is complete", async () => {
    t = await startTestServer({ scenario, database: "embedded" });
    const server = t.server;
    const repo = makeRepo();
    // The postmaster's command line names the real directory (as root it may be behind a link).
    const dataDir = realpathSync(join(t.home, "postgres"));
    const before = runningPostgres(dataDir);
    expect(before).toBeDefined();

    const s = await t.client.sessions.create({ repo, prompt: "slow please" });
    const live = follow(t, s.id);
    await waitFor(async () => live.seen.some((e) => e.type === "text.delta"), 180_000, "the reply to stream");

    // The health state /readyz reads went unavailable and came back (the not-ready window may be
    // shorter than a poll of /readyz itself: its end is what is waited on).
    let back = false;
    t.server.services.dbHealth!.onUp(() => {
      back = true;
    });
    const killedAt = Date.now();
    process.kill(before!, "SIGKILL");
    await waitFor(async () => back, 120_000, "the database health to go away and come back");
    // Nobody brings it back but the control plane, and its log says so.
    const log = () => readFileSync(t!.logFile, "utf8");
    await waitFor(
      async () => log().includes("database unavailable") && log().includes("embedded postgres ready again"),
      120_000,
      "the control plane to start its Postgres again",
    );
    const after = runningPostgres(dataDir);
    expect(after).toBeDefined();
    expect(after).not.toBe(before);
    await waitFor(async () => (await readyz(t!)).status === 200, 60_000, "/readyz to say ready again");
    expect(t.server).toBe(server);

    const streamed = await live.done;
    assertComplete(streamed, killedAt);
    const stored = await collectUntil(t.client, s.id, untilTurnFinished());
    assertComplete(stored, killedAt);
    expect(stored.map((e) => e.id)).toEqual(streamed.map((e) => e.id));

    await taskRuns(t, repo);
  });
});
