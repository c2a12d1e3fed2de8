import { fileURLToPath } from "node:url";
import tailwindcss from "@tailwindcss/vite";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The API paths the dev server forwards to a running control plane (`npm start`), so that
// `npm run dev -w @flotilla/web` talks to it same-origin and its cookies just work.
const API = [
  "/activity",
  "/auth",
  "/sessions",
  "/models",
  "/overview",
  "/harnesses",
  "/tasks",
  "/tokens",
  "/webhooks",
  "/healthz",
];
const target = process.env.FLOTILLA_URL ?? "http://127.0.0.1:7700";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  plugins: [react(), tailwindcss()],
  resolve: {
    // @flotilla/contracts' id helper imports node:crypto; the UI never makes ids, but the import
    // must resolve in a browser bundle.
    alias: { "node:crypto": fileURLToPath(new URL("./src/shims/node-crypto.ts", import.meta.url)) },
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    chunkSizeWarningLimit: 1500,
    rollupOptions: {
      // zod's sources carry comments Rollup cannot place; the warning is noise on every build.
      onwarn: (w, warn) => (w.code === "INVALID_ANNOTATION" ? undefined : warn(w)),
    },
  },
  server: {
    proxy: Object.fromEntries(
      API.map((p) => [
        p,
        { target, bypass: (req) => (req.headers.accept?.includes("text/html") ? "/" : undefined) },
      ]),
    ),
  },
});
