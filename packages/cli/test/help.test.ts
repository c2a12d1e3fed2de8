import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT, tempDir } from "../../../test/support.ts";
import { runCli } from "./cli.ts";

// What a newcomer types first: no server needed.
describe("first steps: --version, server --help, a bad config file", () => {
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
    // …and how to start over: the reset that removes both.
    expect(r.stdout).toMatch(/^ {2}reset \[options\] +Delete this home's data/m);
    expect(r.stdout).toMatch(/`flotilla server reset` removes both/);
  });

  it("server with a bad config file prints every problem, one line each, and exits 2 without a stack", async () => {
    const home = tempDir("cli-badcfg");
    const path = join(home, "config.yaml");
    writeFileSync(path, "port: 1\nscheduler:\n  maxConcurrent: zero\nrunner: x\n");
    const r = await runCli(["server", "--config", path], {
      env: { ...process.env, FLOTILLA_HOME: home } as Record<string, string>,
    });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toEqual([
      "flotilla: the config file has 2 problems:",
      `  ${path}:3: scheduler.maxConcurrent: Invalid input: expected number, received string`,
      `  ${path}:4: runner: unknown field`,
    ]);
  });

  it("npm install -g of the checkout gives a flotilla that runs from any directory", () => {
    // A private prefix: the machine's own global packages are not touched.
    const prefix = tempDir("global-prefix");
    execFileSync("npm", ["install", "-g", "--prefix", prefix, "--no-audit", "--no-fund", ROOT], {
      stdio: "pipe",
      timeout: 120_000,
    });
    const out = execFileSync(join(prefix, "bin", "flotilla"), ["--version"], {
      cwd: tmpdir(),
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: prefix },
      encoding: "utf8",
    });
    expect(out.trim()).toBe(version);
  });
});
