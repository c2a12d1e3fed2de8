// Runs before `npm start` and `npm test` so that a fresh clone needs no separate install step.
// Plain Node, no dependencies: it runs before there are any.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";

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

// The control plane serves the built web UI: (re)build it when it is missing or older than any
// of its sources, so a fresh clone's `npm start` shows a working UI and an up-to-date one starts fast.
const webDist = `${root}packages/web/dist/index.html`;
const newest = (path) => {
  if (!existsSync(path)) return 0;
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let m = st.mtimeMs;
  for (const name of readdirSync(path)) m = Math.max(m, newest(`${path}/${name}`));
  return m;
};
const webSources = [
  "packages/web/src",
  "packages/web/index.html",
  "packages/web/vite.config.ts",
  "packages/web/package.json",
  "packages/client/src",
  "packages/contracts/src",
].map((p) => `${root}${p}`);
const builtAt = existsSync(webDist) ? statSync(webDist).mtimeMs : 0;
if (Math.max(...webSources.map(newest)) > builtAt) {
  console.error("flotilla: building the web UI (npm run build -w @flotilla/web)…");
  const r = spawnSync("npm", ["run", "build", "-w", "@flotilla/web"], { cwd: root, stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
