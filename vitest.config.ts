import { defineConfig } from "vitest/config";

// The tests that load the whole machine on purpose (dozens of sessions or tasks at once) run last
// and alone: beside other files they starve those files' harnesses of the two cores, and each
// other's figures mean nothing. Everything else runs two files at a time.
// The same scale factor as test/support.ts (FLOTILLA_TEST_SCALE): every deadline grows with it.
const SCALE = Math.max(1, Number(process.env.FLOTILLA_TEST_SCALE ?? 1) || 1);
// The fresh clone (an npm install, a UI build, a boot and `npm test` of a clone) is heavy too.
const HEAVY = [
  "packages/server/test/scale.test.ts",
  "packages/server/test/capacity.test.ts",
  "test/fresh-clone.test.ts",
];

// Reads what every other file stored in the run's Postgres, so it runs after all of them.
const AUDIT = "test/failures-audit.test.ts";

export default defineConfig({
  test: {
    globalSetup: ["test/global-setup.ts"],
    // Real OpenCode servers and Postgres: generous per-test deadlines; tests wait on events, not sleeps.
    testTimeout: 120_000 * SCALE,
    hookTimeout: 120_000 * SCALE,
    // expect.poll waits for something to become true (a browser to render a lease change, say):
    // 1 s by default, which a loaded machine overran in CI (web-terminal). It returns as soon as
    // the condition holds, so a longer limit costs nothing when the code works.
    expect: { poll: { timeout: 30_000 * SCALE } },
    pool: "forks",
    // Two cores: two files at a time; each file starts its own harnesses.
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    reporters: ["default"],
    projects: [
      {
        extends: true,
        test: {
          name: "suite",
          sequence: { groupOrder: 0 },
          include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts"],
          exclude: ["**/node_modules/**", ...HEAVY, AUDIT],
        },
      },
      {
        extends: true,
        test: {
          name: "load",
          include: HEAVY,
          sequence: { groupOrder: 1 },
          poolOptions: { forks: { singleFork: true } },
        },
      },
      {
        extends: true,
        test: { name: "audit", include: [AUDIT], sequence: { groupOrder: 2 } },
      },
    ],
  },
});
