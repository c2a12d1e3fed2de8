import { mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger, postgresOutsideDir, startEmbeddedPostgres } from "@flotilla/server";
import type { TestProject } from "vitest/node";

// Every project of the run (suite, load, audit) calls this setup in the one main process: they
// share one Postgres, started by the first and stopped by the last to tear down, so that the
// audit project reads the databases the others made.
interface Shared {
  url: Promise<string>;
  users: number;
  stop: () => Promise<void>;
}
const KEY = Symbol.for("flotilla.test.postgres");
const registry = globalThis as unknown as { [KEY]?: Shared };

/** One real Postgres for the whole run; every test file makes its own database in it. */
export default async function setup(project: TestProject) {
  if (process.env.FLOTILLA_TEST_DATABASE_URL) {
    project.provide("pgUrl", process.env.FLOTILLA_TEST_DATABASE_URL);
    return;
  }
  let shared = registry[KEY];
  if (!shared) {
    let stop = async () => {};
    const url = start().then((s) => {
      stop = s.stop;
      return s.url;
    });
    shared = { url, users: 0, stop: () => stop() };
    registry[KEY] = shared;
  }
  shared.users++;
  project.provide("pgUrl", await shared.url);
  const mine = shared;
  return async () => {
    if (--mine.users > 0) return;
    delete registry[KEY];
    await mine.stop();
  };
}

async function start(): Promise<{ url: string; stop: () => Promise<void> }> {
  const home = mkdtempSync(join(tmpdir(), "flotilla-test-pg-"));
  const pg = await startEmbeddedPostgres(home, createLogger("warn"));
  const stop = async () => {
    await pg.stop();
    // As root the cluster may live outside the home, behind a link (see platform/db/embedded.ts):
    // the link's target is `<outside dir>/data`; the outside dir goes too, or empty ones pile up.
    const data = realpathSync(join(home, "postgres"));
    rmSync(data, { recursive: true, force: true });
    const outside = postgresOutsideDir(home);
    if (data === join(outside, "data")) rmSync(outside, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  };
  return { url: pg.url, stop };
}

declare module "vitest" {
  export interface ProvidedContext {
    pgUrl: string;
  }
}
