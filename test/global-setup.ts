import { mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger, postgresOutsideDir, startEmbeddedPostgres } from "@flotilla/server";
import type { TestProject } from "vitest/node";

/** One real Postgres for the whole run; every test file makes its own database in it. */
export default async function setup(project: TestProject) {
  if (process.env.FLOTILLA_TEST_DATABASE_URL) {
    project.provide("pgUrl", process.env.FLOTILLA_TEST_DATABASE_URL);
    return;
  }
  const home = mkdtempSync(join(tmpdir(), "flotilla-test-pg-"));
  const pg = await startEmbeddedPostgres(home, createLogger("warn"));
  project.provide("pgUrl", pg.url);
  return async () => {
    await pg.stop();
    // As root the cluster may live outside the home, behind a link (see platform/db/embedded.ts):
    // the link's target is `<outside dir>/data`; the outside dir goes too, or empty ones pile up.
    const data = realpathSync(join(home, "postgres"));
    rmSync(data, { recursive: true, force: true });
    const outside = postgresOutsideDir(home);
    if (data === join(outside, "data")) rmSync(outside, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    pgUrl: string;
  }
}
