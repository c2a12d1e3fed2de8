import { createLogger } from "@flotilla/server";
import { describe, expect, it } from "vitest";
import { createTestDb } from "../../../test/support.ts";
import { migrate } from "../src/platform/db/migrate.ts";
import { createPool } from "../src/platform/db/pool.ts";

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
});
