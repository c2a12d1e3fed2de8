/**
 * The model gateway as a process of its own, started by the control plane (supervisor.ts). It
 * outlives a control-plane crash the way a harness does, so a model answer streaming through it is
 * not cut when the control plane dies: the next control plane adopts it. Its settings, provider keys
 * included, arrive on stdin as one JSON document: never in its command line or environment. It
 * reports the port it listens on as one JSON line on fd 3, and exits when no control plane has
 * pinged it for `orphanMs`.
 */
import { createWriteStream } from "node:fs";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { createPool } from "../platform/db/pool.ts";
import { createLogger } from "../platform/logger.ts";
import { registerSecret } from "../platform/redact.ts";
import { startTracing } from "../platform/tracing.ts";
import { ModelGateway, registerKeys } from "./gateway.ts";
import type { GatewaySettings } from "./supervisor.ts";
import { upstreamMap } from "./upstreams.ts";

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

const settings = JSON.parse(await readStdin()) as GatewaySettings;
for (const u of settings.upstreams) registerKeys(u);
for (const v of Object.values(settings.tracing?.headers ?? {})) registerSecret(v);
const log = createLogger(settings.logLevel, {
  destination: createWriteStream(settings.logFile, { flags: "a" }),
});
// Each call's span joins the trace of the turn it serves (gateway.ts).
const tracing = startTracing(settings.tracing, log, { component: "gateway" });
const db = createPool(settings.databaseUrl, 8);
const upstreams = upstreamMap(settings.upstreams);
const gateway = new ModelGateway(
  db,
  upstreams,
  log,
  { secret: settings.controlSecret, fingerprint: settings.fingerprint },
  settings.limits,
);
const server = serve({ fetch: gateway.app.fetch, hostname: settings.host, port: settings.port });
server.once("error", (e) => {
  log.error({ err: e }, "the model gateway cannot listen");
  process.exit(2);
});
server.once("listening", () => {
  const port = (server.address() as AddressInfo).port;
  log.info({ port, providers: [...upstreams.keys()] }, "model gateway listening");
  const ready = createWriteStream("", { fd: 3 });
  ready.on("error", () => {});
  ready.end(`${JSON.stringify({ port })}\n`);
});

let stopping = false;
async function stop(why: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info({ why }, "model gateway stopping");
  (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
  await new Promise<void>((r) => server.close(() => r()));
  await tracing.stop().catch(() => {});
  await db.end().catch(() => {});
  process.exit(0);
}
process.on("SIGTERM", () => void stop("SIGTERM"));
process.on("SIGINT", () => void stop("SIGINT"));
setInterval(() => {
  if (gateway.sincePing() > settings.orphanMs) void stop("no control plane pinged it");
}, 1000).unref();
