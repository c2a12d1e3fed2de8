import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "../../../test/support.ts";
import { runCli } from "./cli.ts";

// What a newcomer types first: no server needed.
describe("flotilla --version and server --help", () => {
  const version = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version as string;

  it("--version and -V print the version of the checkout and exit 0", async () => {
    expect(version).toMatch(/^\d+\.\d+\.\d+/);
    for (const flag of ["--version", "-V"]) {
      const r = await runCli([flag]);
      expect({ flag, code: r.code, out: r.stdout.trim() }).toEqual({ flag, code: 0, out: version });
    }
  });

  it("server --help says where the web UI comes from and where the data lives", async () => {
    const r = await runCli(["server", "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/npm start. builds it first/);
    expect(r.stdout).toMatch(/FLOTILLA_HOME \(default ~\/\.flotilla\)/);
    expect(r.stdout).toMatch(/\/var\/lib\/flotilla\/<hash>/);
  });
});
