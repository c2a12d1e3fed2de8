import { randomBytes } from "node:crypto";
import { FlotillaError, type TerminalClientFrame, type TerminalServerFrame } from "@flotilla/client";
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
        return attach(new WebSocket(wsUrl, { headers: { authorization: `Bearer ${token}` } }), id, url, mode);
      }),
    );
}

function attach(ws: WebSocket, id: string, url: string, mode: "drive" | "view"): Promise<number> {
  const stdin = process.stdin;
  const stdout = process.stdout;
  // Notes go to stderr on their own line, so they never mix into the shell's screen state.
  const note = (text: string) => process.stderr.write(`\r\n\x1b[2m[flotilla] ${text}\x1b[0m\r\n`);
  let driving = false;
  let toldViewing = false;
  const send = (f: TerminalClientFrame) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(f));
  };
  const sendSize = () => {
    if (driving && stdout.columns && stdout.rows)
      send({ type: "resize", cols: stdout.columns, rows: stdout.rows });
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
      process.stderr.write(
        `attached to ${id} (${mode === "view" ? "viewing, read-only" : "driving"}); Ctrl-] detaches\r\n`,
      );
      // Raw in both modes: keys go to the shell unchanged when driving, and Ctrl-] is seen either way.
      if (stdin.isTTY) stdin.setRawMode(true);
      stdin.resume();
      stdin.on("data", (d: Buffer) => {
        const cut = d.indexOf(DETACH);
        const keys = cut === -1 ? d : d.subarray(0, cut);
        if (mode === "drive" && keys.length) {
          if (driving) send({ type: "input", data: keys.toString() });
          else if (!toldViewing) {
            toldViewing = true;
            note("someone else is driving: your keys are not sent (Ctrl-] detaches)");
          }
        }
        if (cut !== -1) finish(EXIT.ok, "detached");
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
        case "lease": {
          const was = driving;
          driving = f.you;
          if (driving && !was) sendSize();
          if (was && !driving) note(`${f.holder ?? "nobody"} took control: you are viewing now`);
          if (f.message) note(f.message);
          return;
        }
        case "request":
          note(`${f.from} asks for control: detach (Ctrl-]) to hand it over`);
          return;
        case "declined":
          note(`${f.by} kept control`);
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
