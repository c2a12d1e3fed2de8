import type { ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FlotillaClient } from "@flotilla/client";
import type { Task } from "@flotilla/contracts";
import { type ScriptedModelServer, startScriptedModel } from "@flotilla/scripted-model";
import { freePort } from "@flotilla/server";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  collectUntil,
  createTestDb,
  MODEL,
  makeRepo,
  spawnFlotilla,
  tempDir,
  untilTurnFinished,
  waitFor,
} from "../../../test/support.ts";
import { scenario } from "./scenario.ts";

// Two control planes on one Postgres, as two machines would run them: each its own home, port and
// harnesses; tasks may be claimed by either; one is killed mid-run.

interface Replica {
  home: string;
  port: number;
  child: ChildProcess;
  client: FlotillaClient;
}

let model: ScriptedModelServer;
let db: string;
const replicas: Replica[] = [];

function configFor(home: string): void {
  writeFileSync(
    join(home, "config.yaml"),
    [
      `defaultModel: ${MODEL}`,
      "permission: allow",
      'demo: "off"',
      "scheduler: { maxConcurrent: 4, perProject: 4, perToken: 4, leaseMs: 3000 }",
      "pool: { warm: 0, warmWorkspaces: 0 }",
      "providers:",
      "  scripted:",
      `    baseURL: ${model.url}`,
      "    models:",
      "      scripted-1: { name: Scripted }",
    ].join("\n"),
  );
}

async function boot(home: string, port: number, token: () => string): Promise<Replica> {
  const log = join(home, "server.log");
  const child = spawnFlotilla(
    ["server", "--port", String(port)],
    { FLOTILLA_HOME: home, DATABASE_URL: db },
    log,
  );
  await waitFor(
    async () => {
      if (child.exitCode !== null)
        throw new Error(`replica exited: ${readFileSync(log, "utf8").slice(-2000)}`);
      return (await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1000) })).ok;
    },
    60_000,
    "replica ready",
  );
  return {
    home,
    port,
    child,
    client: new FlotillaClient({ baseUrl: `http://127.0.0.1:${port}`, token: token() }),
  };
}

beforeAll(async () => {
  model = await startScriptedModel({ scenario });
  db = await createTestDb();
  const homes = [tempDir("replica-a"), tempDir("replica-b")];
  for (const h of homes) configFor(h);
  // The first replica to boot makes the admin token; both then share the one database's tokens.
  const a = await boot(homes[0]!, await freePort(), () => "");
  const token = readFileSync(join(homes[0]!, "admin.token"), "utf8").trim();
  a.client = new FlotillaClient({ baseUrl: `http://127.0.0.1:${a.port}`, token });
  replicas.push(a, await boot(homes[1]!, await freePort(), () => token));
});

afterAll(async () => {
  for (const r of replicas) {
    if (r.child.exitCode === null && r.child.signalCode === null) {
      const gone = new Promise((res) => r.child.once("exit", res));
      r.child.kill("SIGTERM");
      await gone;
    }
  }
  // A killed replica's harnesses and model gateway outlive it (their own process groups): stop them here.
  const c = new pg.Client({ connectionString: db });
  await c.connect();
  for (const r of (
    await c.query(
      "select pid from harnesses where pid is not null and state in ('starting', 'ready') union select pid from gateways",
    )
  ).rows) {
    try {
      process.kill(-r.pid, "SIGKILL");
    } catch {}
  }
  await c.end();
  await model?.close();
});

describe("two replicas on one Postgres", () => {
  it("an SSE client on either replica sees every event of a session run by the other", async () => {
    const [a, b] = replicas as [Replica, Replica];
    const s = await a.client.sessions.create({ repo: makeRepo(), prompt: "write hello please" });
    const seenOnB = await collectUntil(b.client, s.id, untilTurnFinished(1));
    const stored = (await a.client.sessions.events(s.id)).items.slice(0, seenOnB.length);
    expect(seenOnB.map((e) => e.id)).toEqual(stored.map((e) => e.id));
    expect(seenOnB.map((e) => e.seq)).toEqual(seenOnB.map((_, i) => i + 1));
    // Acting on the session through the other replica is refused with the replica to use.
    await expect(b.client.sessions.send(s.id, { text: "more" })).rejects.toMatchObject({
      code: "conflict",
      field: "id",
    });
  });

  it("kill -9 of one replica mid-run: every task still finishes exactly once", async () => {
    const [a, b] = replicas as [Replica, Replica];
    const repo = makeRepo();
    const ids: string[] = [];
    for (let i = 0; i < 6; i++)
      ids.push((await b.client.tasks.submit({ repo, prompt: `slow task ${i}`, maxAttempts: 3 })).task.id);
    // Wait until replica A is running some of them, then kill it.
    const replicaA = await waitFor(
      async () => {
        const tasks = await Promise.all(ids.map((id) => b.client.tasks.get(id)));
        const running = tasks.flatMap((t) => (t.state === "running" ? [t.attemptList!.at(-1)!.replica] : []));
        const distinct = [...new Set(running)];
        return distinct.length === 2 ? distinct : undefined;
      },
      90_000,
      "both replicas running tasks",
    );
    const aRunning = (await Promise.all(ids.map((id) => a.client.tasks.get(id)))).filter(
      (t) => t.state === "running",
    );
    const killed = new Promise((res) => a.child.once("exit", res));
    a.child.kill("SIGKILL");
    await killed;
    const victimReplica = (await Promise.all(aRunning.map((t) => b.client.tasks.get(t.id)))).flatMap((t) =>
      t.attemptList!.filter((x) => !x.finishedAt).map((x) => x.replica),
    );
    expect(victimReplica.length).toBeGreaterThan(0);
    const done = await waitFor(
      async () => {
        const tasks = await Promise.all(ids.map((id) => b.client.tasks.get(id)));
        return tasks.every((t) => ["succeeded", "failed", "dead", "cancelled", "timed_out"].includes(t.state))
          ? tasks
          : undefined;
      },
      180_000,
      "every task final",
    );
    for (const t of done as Task[]) {
      expect(t.state).toBe("succeeded");
      const attempts = t.attemptList!;
      // Exactly one attempt succeeded; the others were lost with the killed replica.
      expect(attempts.filter((x) => x.outcome === "succeeded")).toHaveLength(1);
      for (const x of attempts.filter((y) => y.outcome !== "succeeded")) expect(x.outcome).toBe("lost");
      // Never two attempts at once: each starts after the previous one was closed.
      for (let i = 1; i < attempts.length; i++) {
        expect(Date.parse(attempts[i]!.startedAt)).toBeGreaterThanOrEqual(
          Date.parse(attempts[i - 1]!.finishedAt!),
        );
      }
      const finals = t.history!.filter((h) => ["succeeded", "failed", "dead"].includes(h.to));
      expect(finals).toHaveLength(1);
    }
    expect(replicaA.length).toBe(2);
  });
});
