// Runs before `npm start` and `npm test` so that a fresh clone needs no separate install step.
// Plain Node, no dependencies: it runs before there are any.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";

const root = new URL("..", import.meta.url).pathname;
const marker = `${root}node_modules/.package-lock.json`;
const lock = `${root}package-lock.json`;

const stale = !existsSync(marker) || statSync(lock).mtimeMs > statSync(marker).mtimeMs;
if (stale) {
  console.error("flotilla: installing dependencies (npm install)…");
  // Not `npm ci`: npm 11 writes lock files without other platforms' optional packages and then
  // refuses them in `npm ci` as out of sync. `npm install` keeps the locked versions.
  const r = spawnSync("npm", ["install", "--no-audit", "--no-fund"], { cwd: root, stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

// OpenCode's grep/glob tools need ripgrep on PATH; it cannot download one here.
try {
  execFileSync("rg", ["--version"], { stdio: "ignore" });
} catch {
  console.error(
    "flotilla: note: ripgrep (rg) is not on PATH; agents' search tools will fail. Install it: apt-get install ripgrep",
  );
}
