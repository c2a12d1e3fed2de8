import { existsSync } from "node:fs";
import type { FlotillaClient } from "@flotilla/client";
import { chromium } from "playwright-core";
import { makeRepo, type Stats, sseFrames, stats, table } from "./support.ts";

export const CHROMIUM = "/usr/bin/chromium";

export interface UiResult {
  loads: number;
  /** Bytes on the wire (as served, compressed) per first load of the session page, by kind. */
  scriptBytes: number;
  styleBytes: number;
  documentBytes: number;
  scriptFiles: number;
  /** Scripts the page fetched later (lazy chunks): none expected on the conversation tab. */
  lateScripts: number;
  domContentLoadedMs: Stats;
  /** Navigation start → the first row of the conversation in the DOM. */
  firstEventRenderedMs: Stats;
  /** Baseline, same run: request → first SSE event of the same session, read by a bare HTTP client. */
  apiFirstEventMs: Stats;
}

/** The first SSE event of a session's stream, timed from the request by a plain fetch. */
async function apiFirstEvent(url: string, token: string, sessionId: string): Promise<number> {
  const ac = new AbortController();
  const t0 = performance.now();
  const res = await fetch(`${url}/sessions/${sessionId}/events`, {
    headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" },
    signal: ac.signal,
  });
  let ms = Number.NaN;
  for await (const f of sseFrames(res.body as unknown as AsyncIterable<Uint8Array>, () =>
    performance.now(),
  )) {
    ms = f.t - t0;
    break;
  }
  ac.abort();
  return ms;
}

/**
 * First load of the built UI's session page in Debian's Chromium: each load in a fresh browser
 * context (empty cache, the login cookie only), as a person opening a link to a session would.
 */
export async function runUi(opts: {
  client: FlotillaClient;
  url: string;
  token: string;
  loads: number;
  progress: (s: string) => void;
}): Promise<UiResult | undefined> {
  if (!existsSync(CHROMIUM)) {
    opts.progress(`skipping the UI phase: no ${CHROMIUM} (apt-get install chromium)`);
    return undefined;
  }
  const { client, url, token } = opts;
  const session = await client.sessions.create({ repo: makeRepo(), prompt: "hello" });
  for await (const e of client.sessions.stream(session.id))
    if (e.type === "session.status" && e.data.status === "idle") break;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
  });
  try {
    const login = await browser.newContext();
    const lp = await login.newPage();
    await lp.goto(`${url}/login`);
    await lp.getByLabel("API token").fill(token);
    await lp.getByRole("button", { name: "Log in" }).click();
    await lp.waitForURL(`${url}/`);
    const storageState = await login.storageState();
    await login.close();

    const firstRendered: number[] = [];
    const dcl: number[] = [];
    const api: number[] = [];
    let bytes = { script: 0, stylesheet: 0, document: 0 };
    let scriptFiles = 0;
    let lateScripts = 0;
    for (let i = 0; i < opts.loads; i++) {
      api.push(await apiFirstEvent(url, token, session.id));
      const context = await browser.newContext({ storageState });
      const page = await context.newPage();
      const sizes: Promise<{ kind: string; n: number }>[] = [];
      let rendered = false;
      page.on("response", (r) => {
        const kind = r.request().resourceType();
        if (kind !== "script" && kind !== "stylesheet" && kind !== "document") return;
        if (kind === "script" && rendered) lateScripts++;
        sizes.push(
          r
            .request()
            .sizes()
            .then((s) => ({ kind, n: s.responseBodySize + s.responseHeadersSize })),
        );
      });
      await page.goto(`${url}/s/${session.id}`);
      await page
        .locator("[data-testid=transcript] [data-index]")
        .first()
        .waitFor({ timeout: 60_000 })
        .catch(async (e) => {
          await page.screenshot({ path: "/tmp/flotilla-bench-ui-failure.png" }).catch(() => {});
          throw e;
        });
      rendered = true;
      const at = await page.evaluate(() => {
        const nav = performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming;
        return { now: performance.now(), dcl: nav.domContentLoadedEventEnd };
      });
      firstRendered.push(at.now);
      dcl.push(at.dcl);
      const got = await Promise.all(sizes);
      if (i === 0) {
        bytes = { script: 0, stylesheet: 0, document: 0 };
        for (const s of got) bytes[s.kind as keyof typeof bytes] += s.n;
        scriptFiles = got.filter((s) => s.kind === "script").length;
      }
      await context.close();
      opts.progress(`ui load ${i + 1}/${opts.loads}: first event rendered at ${Math.round(at.now)} ms`);
    }
    return {
      loads: opts.loads,
      scriptBytes: bytes.script,
      styleBytes: bytes.stylesheet,
      documentBytes: bytes.document,
      scriptFiles,
      lateScripts,
      domContentLoadedMs: stats(dcl),
      firstEventRenderedMs: stats(firstRendered),
      apiFirstEventMs: stats(api),
    };
  } finally {
    await browser.close();
  }
}

const kib = (b: number) => Math.round((b / 1024) * 10) / 10;

export function reportUi(out: (s?: string) => void, u: UiResult | undefined, n: string): void {
  if (!u) {
    out(`${n}. UI first load: skipped (no ${CHROMIUM})`);
    return;
  }
  out(
    table(`${n}. UI first load of a session page (${u.loads} loads, each a fresh browser context)`, [
      ["DOMContentLoaded", u.domContentLoadedMs],
      ["first event rendered  <==", u.firstEventRenderedMs],
      ["baseline: first SSE event, bare HTTP client", u.apiFirstEventMs],
    ]),
  );
  out(
    `   JavaScript transferred: ${kib(u.scriptBytes)} KiB in ${u.scriptFiles} file(s)  <==  ` +
      `(CSS ${kib(u.styleBytes)} KiB, HTML ${kib(u.documentBytes)} KiB; as served, compressed; headers included)`,
  );
  out(
    `   first event rendered p50 = ${Math.round((u.firstEventRenderedMs.p50 / u.apiFirstEventMs.p50) * 10) / 10} × the bare client's first event; ` +
      `scripts fetched after the first render: ${u.lateScripts}`,
  );
}
