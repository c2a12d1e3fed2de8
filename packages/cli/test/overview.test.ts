import type { Overview, SessionPage } from "@flotilla/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  collectUntil,
  makeRepo,
  startTestServer,
  type TestServer,
  untilTurnFinished,
} from "../../../test/support.ts";
import { scenario } from "../../server/test/scenario.ts";
import { killChildren, runCli } from "./cli.ts";

// The CLI side of the web UI's Overview page and its sessions search.
describe("flotilla overview and sessions --search", () => {
  let t: TestServer;
  let conn: string[];
  let failing: string;
  beforeAll(async () => {
    t = await startTestServer({ scenario });
    conn = ["--server", t.url, "--token", t.token];
    const ok = await t.client.sessions.create({
      repo: makeRepo(),
      prompt: "hello there",
      title: "Tidy the parser",
    });
    const bad = await t.client.sessions.create({ repo: makeRepo(), prompt: "fail auth now" });
    failing = bad.id;
    await collectUntil(t.client, ok.id, untilTurnFinished(1));
    await collectUntil(t.client, bad.id, untilTurnFinished(1));
  });
  afterAll(async () => {
    killChildren();
    await t?.close();
  });

  it("prints the same reading as the API, and the failure with its error", async () => {
    const json = await runCli(["overview", "--json", ...conn]);
    expect(json.code).toBe(0);
    const o = JSON.parse(json.stdout) as Overview;
    expect(o.sessions.idle).toBe(2);
    expect(o.today.tokens.input).toBeGreaterThan(0);
    expect(o.failures.map((f) => f.id)).toEqual([failing]);
    const text = await runCli(["overview", ...conn]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/sessions\s+running 0 · needs approval 0 · idle 2/);
    expect(text.stdout).toContain("recent failures");
    expect(text.stdout).toContain("invalid api key");
  });

  it("finds sessions by title, in any case", async () => {
    const r = await runCli(["sessions", "--search", "PARSER", "--json", ...conn]);
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as SessionPage).items.map((s) => s.title)).toEqual(["Tidy the parser"]);
  });
});
