import { randomBytes } from "node:crypto";
import {
  type FlotillaClient,
  FlotillaError,
  type TerminalClientFrame,
  type TerminalServerFrame,
} from "@flotilla/client";
import type { ErrorBody } from "@flotilla/contracts";
import type { Command } from "commander";
import WebSocket from "ws";
import { action, CliError, connect, EXIT } from "./connection.ts";

/** Ctrl-] detaches, as in telnet: it is rarely needed inside a shell, unlike Ctrl-C or Ctrl-D. */
const DETACH = 0x1d;

export function registerAttach(program: Command): void {
  program
    .command("attach")
    .description("Attach this terminal to a session's shell (in its workspace); Ctrl-] detaches")
    .argument("<session>", "session id")
    .option("--view", "watch read-only: nothing typed here is sent")
    .action(
      action(async (id: string, flags: { view?: boolean }, cmd: Command) => {
        const { client, url, token } = connect(cmd);
        const mode = flags.view ? "view" : "drive";
        // One id per process: a reconnect of this process would keep its lease (the server's grace).
        const wsUrl = client.terminalUrl(id, { mode, client: `cli-${randomBytes(6).toString("hex")}` });
        const who = await holderNames(client);
        return attach(
          new WebSocket(wsUrl, { headers: { authorization: `Bearer ${token}` } }),
          id,
          url,
          mode,
          who,
        );
      }),
    );
}

/**
 * Puts a lease holder's label (`<token id>/<client id>`) in words: the token's name when this token
 * may list tokens (admins), and the kind of client. Best effort: without them, the token id.
 */
async function holderNames(client: FlotillaClient): Promise<(label: string) => string> {
  const me = await client.auth.whoami().catch(() => undefined);
  const tokens = me?.role === "admin" ? await client.tokens.list().catch(() => []) : [];
  return (label) => {
    const [tokenId = label, clientId = ""] = label.split("/");
    const where = clientId.startsWith("web-")
      ? "a browser tab"
      : clientId.startsWith("cli-")
        ? "flotilla attach"
        : "another client";
    if (tokenId === me?.tokenId) return `you, in ${where}`;
    return `${tokens.find((t) => t.id === tokenId)?.name ?? tokenId}, in ${where}`;
  };
}

type Lease = Extract<TerminalServerFrame, { type: "lease" }>;

/** 14:03:07 (in 12 s): the server's clock, read on this one. */
function when(iso: string): string {
  const at = new Date(iso);
  const secs = Math.max(0, Math.ceil((at.getTime() - Date.now()) / 1000));
  return `${at.toTimeString().slice(0, 8)} (in ${secs} s)`;
}

function attach(
  ws: WebSocket,
  id: string,
  url: string,
  mode: "drive" | "view",
  who: (label: string) => string,
): Promise<number> {
  const stdin = process.stdin;
  const stdout = process.stdout;
  // Notes go to stderr on their own line, so they never mix into the shell's screen state.
  const note = (text: string) => process.stderr.write(`\r\n\x1b[2m[flotilla] ${text}\x1b[0m\r\n`);
  let driving = false;
  /** The last lease frame: nothing is said about the role until the server has said it. */
  let lease: Lease | undefined;
  /** A `take` is out (asked the driver, or waiting for an away holder's grace to end). */
  let asked = false;
  const send = (f: TerminalClientFrame) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(f));
  };
  const sendSize = () => {
    if (driving && stdout.columns && stdout.rows)
      send({ type: "resize", cols: stdout.columns, rows: stdout.rows });
  };
  const take = () => {
    asked = true;
    send({ type: "take" });
  };
  /** Where the lease stands, for someone who wants to drive and does not. */
  const standing = (f: Lease): string => {
    if (f.holder === null) return "nobody holds the lease: taking it";
    if (f.graceUntil)
      return `the lease is held by ${who(f.holder)}, which disconnected: it frees at ${when(f.graceUntil)} unless it comes back; you get control then`;
    return `the lease is held by ${who(f.holder)}, who is driving: your keys are not sent; type any key to ask for control`;
  };
  /** Drive mode: what a lease frame changes, said once, and the lease asked for when it is free or freeing. */
  const onLease = (f: Lease) => {
    const prev = lease;
    lease = f;
    const was = driving;
    driving = f.you;
    if (driving && !was) {
      asked = false;
      sendSize();
    }
    if (!prev) {
      process.stderr.write(
        `attached to ${id} (${driving ? "driving" : "viewing for now"}); Ctrl-] detaches\r\n`,
      );
      if (!driving) note(standing(f));
    } else if (driving && !was) note("you are driving now: your keys go to the shell");
    else if (was && !driving)
      note(f.holder ? `${who(f.holder)} took control: you are viewing now` : "you no longer hold the lease");
    else if (!driving && (f.holder !== prev.holder || f.graceUntil !== prev.graceUntil)) {
      // A new holder, or the old one back from its grace: a request made before is not theirs to answer.
      if (f.holder !== prev.holder || !f.graceUntil) asked = false;
      note(standing(f));
    }
    // Free, or freeing once the holder's grace ends: ask now, so it comes here then. Asking a
    // connected driver waits for a key, since it interrupts them.
    if (!driving && !asked && (f.holder === null || f.graceUntil)) take();
  };

  return new Promise<number>((resolve, reject) => {
    let done = false;
    const finish = (code: number, message?: string) => {
      if (done) return;
      done = true;
      if (stdin.isTTY) stdin.setRawMode(false);
      stdin.pause();
      stdout.off("resize", sendSize);
      if (message) note(message);
      ws.close();
      resolve(code);
    };

    ws.once("unexpected-response", (_req, res) => {
      // A refusal before the upgrade is an ordinary API error body: report it like any other command.
      let text = "";
      res.on("data", (d: Buffer) => {
        text += d.toString();
      });
      res.on("end", () => {
        done = true;
        try {
          reject(FlotillaError.fromBody(res.statusCode ?? 500, JSON.parse(text) as ErrorBody));
        } catch {
          reject(new CliError("attach_failed", `HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
        }
      });
    });
    ws.once("error", (e) => {
      if (done) return;
      done = true;
      reject(new CliError("unreachable", `cannot attach at ${url}: ${e.message}`, EXIT.setup));
    });
    ws.once("open", () => {
      // Driving or not is the server's to say (its first lease frame); a viewer is one from the start.
      if (mode === "view")
        process.stderr.write(`attached to ${id} (viewing, read-only); Ctrl-] detaches\r\n`);
      // Raw in both modes: keys go to the shell unchanged when driving, and Ctrl-] is seen either way.
      if (stdin.isTTY) stdin.setRawMode(true);
      stdin.resume();
      stdin.on("data", (d: Buffer) => {
        const cut = d.indexOf(DETACH);
        const keys = cut === -1 ? d : d.subarray(0, cut);
        if (mode === "drive" && keys.length) {
          if (driving) send({ type: "input", data: keys.toString() });
          else if (!asked && lease?.holder) {
            take();
            note(`asked ${who(lease.holder)} for control: your keys are not sent until it is handed over`);
          }
        }
        if (cut !== -1) {
          // Leaving on purpose: the lease goes at once (to whoever asked), not after the grace the
          // server keeps for a dropped connection.
          if (driving) send({ type: "release" });
          finish(EXIT.ok, "detached");
        }
      });
      stdout.on("resize", sendSize);
    });
    ws.on("message", (raw) => {
      const f = JSON.parse(raw.toString()) as TerminalServerFrame;
      switch (f.type) {
        case "snapshot":
        case "output":
          stdout.write(f.data);
          return;
        case "lease":
          if (mode === "drive") onLease(f);
          return;
        case "request":
          note(`${who(f.from)} asks for control: detach (Ctrl-]) to hand it over`);
          return;
        case "declined":
          asked = false;
          note(`${who(f.by)} kept control: type any key to ask again`);
          return;
        case "error":
          note(`${f.code}: ${f.message}`);
          return;
        case "exit":
          finish(EXIT.ok, `the shell exited${f.code ? ` with ${f.code}` : ""}`);
          return;
        case "resize":
          return;
      }
    });
    ws.once("close", () => finish(EXIT.ok, "the server closed the terminal"));
  });
}
