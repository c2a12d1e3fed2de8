import type { FlotillaClient, SessionEvent } from "@flotilla/client";
import type { SessionStatus, Tokens } from "@flotilla/contracts";
import { CliError, EXIT, isUnreachable, unreachableMessage } from "./connection.ts";
import { PermissionDesk, type Terminal } from "./prompt.ts";
import type { Renderer } from "./render.ts";
import type { Style } from "./style.ts";

type Finished = Extract<SessionEvent, { type: "turn.finished" }>["data"];

export interface WatchOptions {
  client: FlotillaClient;
  url: string;
  sessionId: string;
  /** Stream the events after this seq. */
  after: number;
  /** JSON lines on stdout instead of the renderer. */
  json: boolean;
  /** Answer every permission ask with "once". */
  yes: boolean;
  renderer?: Renderer;
  style: Style;
  /** A keyboard to answer asks at; absent means asks wait for `flotilla approve|reject`. */
  term?: Terminal;
  /** Stops following (the caller learnt elsewhere that the turn is over or moot). */
  signal?: AbortSignal;
  /** Replaces the default Ctrl-C (abort the turn): a queued task's turn is not the caller's to abort. */
  onInterrupt?: () => void;
}

export interface TurnResult {
  finished?: Finished;
  status?: SessionStatus;
  /** Why the session failed or was interrupted without a turn. */
  error?: { name: string; message: string };
  tokens: Tokens;
  cost: number;
  /** Ctrl-C was pressed and the turn was asked to abort. */
  interrupted: boolean;
}

// The client backs off up to 5 s between attempts: about half a minute before giving up.
const MAX_RECONNECTS = 10;
// After an abort was accepted the harness confirms quickly; do not wait forever if it does not.
const ABORT_SETTLE_MS = 15_000;

export function turnExitCode(r: TurnResult): number {
  if (r.interrupted) return EXIT.interrupted;
  return r.finished?.outcome === "success" ? EXIT.ok : EXIT.failed;
}

/**
 * Follows one session from `after` until its turn ends (its turn.finished), or until provisioning
 * fails. Renders or prints each event, answers permission asks (by
 * prompt, or "once" with --yes), and turns Ctrl-C into an abort of the turn.
 */
export async function watchTurn(o: WatchOptions): Promise<TurnResult> {
  const { client, sessionId: id, renderer } = o;
  const result: TurnResult = {
    tokens: { input: 0, output: 0, reasoning: 0, cacheRead: 0, cacheWrite: 0 },
    cost: 0,
    interrupted: false,
  };
  const ac = new AbortController();
  const timers: NodeJS.Timeout[] = [];
  const stopIn = (ms: number) => timers.push(setTimeout(() => ac.abort(), ms));
  const say = (text: string) => {
    if (renderer) renderer.line(o.style.yellow(`  ${text}`));
    else process.stderr.write(`${text}\n`);
  };

  let started = false;
  let lostConnection: unknown;
  let reconnecting = false;

  // A session still provisioning has no turn to abort: the server then drops the first prompt (the
  // session ends idle without a turn) or aborts the turn as it starts.
  const requestAbort = () => {
    client.sessions.abort(id).then(
      (s) => {
        if (s.status !== "provisioning") stopIn(ABORT_SETTLE_MS);
      },
      (e) => {
        say(`abort failed: ${(e as Error).message}`);
        ac.abort();
      },
    );
  };

  const onInterrupt = () => {
    if (result.interrupted) {
      say("left without waiting; the session keeps its state");
      process.exit(EXIT.interrupted);
    }
    result.interrupted = true;
    // The terminal echoed "^C" at the cursor; start our line over it rather than after it.
    if (renderer && process.stdout.isTTY) process.stdout.write("\r");
    say("■ aborting the turn… (Ctrl-C again to leave without waiting)");
    void desk?.close();
    requestAbort();
  };

  const interrupt = o.onInterrupt ?? onInterrupt;
  const desk =
    renderer && o.term && !o.yes
      ? new PermissionDesk(client, id, renderer, o.style, o.term, interrupt)
      : undefined;

  const autoReply = (requestId: string) => {
    client.sessions.reply(id, requestId, { reply: "once" }).catch((e) => {
      // Answered elsewhere first (conflict) is fine; anything else leaves the ask waiting.
      if ((e as { code?: string }).code !== "conflict") say(`could not allow ${requestId}: ${e.message}`);
    });
  };

  const stop = () => ac.abort();
  o.signal?.addEventListener("abort", stop);
  if (o.signal?.aborted) ac.abort();
  process.on("SIGINT", interrupt);
  try {
    const events = client.sessions.stream(id, {
      after: o.after,
      signal: ac.signal,
      onReconnecting: (attempt, err) => {
        if (attempt === 1) say("connection to the server lost; reconnecting…");
        reconnecting = true;
        if (attempt > MAX_RECONNECTS) {
          lostConnection = err;
          ac.abort();
        }
      },
    });
    for await (const e of events) {
      if (reconnecting) {
        reconnecting = false;
        say("reconnected");
      }
      if (o.json) process.stdout.write(`${JSON.stringify(e)}\n`);
      else renderer?.event(e);
      if (done(e)) break;
    }
  } finally {
    process.off("SIGINT", interrupt);
    o.signal?.removeEventListener("abort", stop);
    for (const t of timers) clearTimeout(t);
    ac.abort();
    await desk?.close();
    renderer?.finish();
  }
  if (lostConnection !== undefined && !result.finished) {
    throw new CliError(
      "disconnected",
      isUnreachable(lostConnection) ? unreachableMessage(o.url, lostConnection) : String(lostConnection),
      EXIT.setup,
    );
  }
  return result;

  function done(e: SessionEvent): boolean {
    switch (e.type) {
      case "usage":
        for (const k of Object.keys(result.tokens) as (keyof Tokens)[]) result.tokens[k] += e.data.tokens[k];
        result.cost += e.data.cost;
        return false;
      case "turn.started":
        started = true;
        return false;
      case "permission.asked":
        if (o.yes) autoReply(e.data.requestId);
        else desk?.asked(e.data);
        return false;
      case "permission.replied":
        desk?.replied(e.data.requestId);
        return false;
      case "turn.finished":
        // The turn's one final event: its outcome, its error and what it left the session in.
        result.finished = e.data;
        result.status = e.data.status;
        if (e.data.error && e.data.outcome !== "success") result.error = e.data.error;
        return true;
      case "session.status":
        result.status = e.data.status;
        if (e.data.error) result.error = e.data.error;
        // Ends without a turn: provisioning failed, was cut short or lost its prompt to an abort,
        // or the session went away.
        return (
          e.data.status === "failed" ||
          e.data.status === "deleted" ||
          ((e.data.status === "interrupted" || e.data.status === "idle") && !started)
        );
      default:
        return false;
    }
  }
}
