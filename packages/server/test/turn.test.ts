import { type EventBody, failure } from "@flotilla/contracts";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { step, type TurnInput, type TurnState } from "../src/sessions/turn.ts";

// The turn machine alone: pure, no harness, no database. The owner (sessions/turns.ts) runs these
// same steps in the append's transaction; the session tests drive it against a real harness.

const aborted = failure("MessageAbortedError", "aborted by request");
const broken = failure("APIError", "the provider broke", { retriable: true });

/** Everything that can happen to a session's turn, in any order (a start included: a second prompt). */
const input: fc.Arbitrary<TurnInput> = fc.oneof(
  fc.constant<TurnInput>({ type: "start", messageId: "msg_2", prompt: "again", model: "p/m" }),
  fc.constantFrom("a", "b", "c").map<TurnInput>((requestId) => ({ type: "permission.asked", requestId })),
  fc.constantFrom("a", "b", "c").map<TurnInput>((requestId) => ({ type: "permission.replied", requestId })),
  fc.constantFrom(aborted, broken).map<TurnInput>((error) => ({ type: "error", error })),
  fc.constant<TurnInput>({ type: "abort" }),
  fc.constant<TurnInput>({ type: "abort.unanswered" }),
  fc
    .record({
      answered: fc.boolean(),
      error: fc.option(fc.constantFrom(aborted, broken), { nil: undefined }),
    })
    .map<TurnInput>(({ answered, error }) => ({ type: "idle", answered, ...(error ? { error } : {}) })),
  fc.constant<TurnInput>({ type: "refused", error: failure("HarnessError", "prompt was refused") }),
  fc.constant<TurnInput>({
    type: "lost",
    error: failure("HarnessLost", "harness exited"),
    reason: "harness exited",
  }),
);

/** What ends a running turn, whatever came before. */
const ending: fc.Arbitrary<TurnInput> = fc.oneof(
  fc.constant<TurnInput>({ type: "idle", answered: true }),
  fc.constant<TurnInput>({ type: "abort.unanswered" }),
  fc.constant<TurnInput>({ type: "refused", error: failure("HarnessError", "prompt was refused") }),
  fc.constant<TurnInput>({ type: "lost", error: failure("HarnessLost", "gone"), reason: "gone" }),
);

function run(inputs: TurnInput[], from: TurnState | null = null) {
  let state = from;
  const events: EventBody[] = [];
  const statuses: string[] = [];
  inputs.forEach((i, n) => {
    const s = step(state, i, 1000 + n);
    state = s.state;
    events.push(...s.events);
    if (s.status) statuses.push(s.status);
  });
  return { state, events, statuses };
}

const first: TurnInput = { type: "start", messageId: "msg_1", prompt: "hello", model: "p/m" };

describe("the turn machine", () => {
  it("ends every started turn with exactly one turn.finished, whatever the interleaving", () => {
    fc.assert(
      fc.property(fc.array(input, { maxLength: 30 }), ending, (middle, end) => {
        const { state, events } = run([first, ...middle, end]);
        // Turns are told in order: started, then its one finish, before the next can start.
        let open = false;
        for (const e of events) {
          if (e.type === "turn.started") {
            expect(open).toBe(false);
            open = true;
          } else if (e.type === "turn.finished") {
            expect(open).toBe(true);
            open = false;
          }
        }
        // The ending input ends the turn that was running when it came.
        expect(open).toBe(false);
        expect(state).toBeNull();
        const started = events.filter((e) => e.type === "turn.started").length;
        expect(events.filter((e) => e.type === "turn.finished")).toHaveLength(started);
      }),
      { numRuns: 2000 },
    );
  });

  it("gives each turn the one outcome its inputs call for, and the status it leaves matches", () => {
    fc.assert(
      fc.property(
        fc.array(
          input.filter((i) => i.type !== "start"),
          { maxLength: 30 },
        ),
        ending,
        (middle, end) => {
          const { events, statuses } = run([first, ...middle, end]);
          const finished = events.filter((e) => e.type === "turn.finished");
          expect(finished).toHaveLength(1);
          const f = finished[0]!;
          if (f.type !== "turn.finished") throw new Error("unreachable");
          // Which input ended it: the first ending input after the start.
          const all = [...middle, end];
          const endAt = all.findIndex(
            (i) =>
              (i.type === "idle" && i.answered) ||
              i.type === "abort.unanswered" ||
              i.type === "refused" ||
              i.type === "lost",
          );
          const ender = all[endAt]!;
          const abortAsked = all.slice(0, endAt).some((i) => i.type === "abort");
          const expected =
            ender.type === "lost"
              ? "interrupted"
              : ender.type === "refused"
                ? "error"
                : ender.type === "abort.unanswered"
                  ? "aborted"
                  : undefined;
          if (expected) expect(f.data.outcome).toBe(expected);
          else if (abortAsked) expect(["aborted", "error"]).toContain(f.data.outcome);
          else expect(["success", "error"]).toContain(f.data.outcome);
          // An abort nobody asked for never makes an aborted turn.
          if (!abortAsked && ender.type !== "abort.unanswered") expect(f.data.outcome).not.toBe("aborted");
          expect(f.data.status).toBe(f.data.outcome === "interrupted" ? "interrupted" : "idle");
          expect(statuses.at(-1)).toBe(f.data.status);
          // A failed turn says why; a successful one carries no error.
          expect(f.data.outcome === "success").toBe(f.data.error === undefined);
          // Nothing after the end: no event, no status change.
          const afterEnd = run([first, ...all.slice(0, endAt + 1)]);
          expect(afterEnd.events).toEqual(events);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("waits for a person exactly while a permission request is open", () => {
    fc.assert(
      fc.property(
        fc.array(
          input.filter((i) => i.type === "permission.asked" || i.type === "permission.replied"),
          { maxLength: 20 },
        ),
        (asks) => {
          let state: TurnState | null = step(null, first, 0).state;
          const open = new Set<string>();
          for (const i of asks) {
            const s = step(state, i, 1);
            state = s.state;
            const was = open.size;
            if (i.type === "permission.asked") open.add(i.requestId);
            else if (i.type === "permission.replied") open.delete(i.requestId);
            if (was === 0 && open.size > 0) expect(s.status).toBe("waiting_permission");
            else if (was > 0 && open.size === 0) expect(s.status).toBe("running");
            else expect(s.status).toBeUndefined();
          }
          expect(state?.phase === "running" && state.waiting.length).toBe(open.size);
        },
      ),
    );
  });

  it("drops a prompt still waiting for its harness on abort, so provisioning starts nothing", () => {
    const pending = step(null, { type: "queue", prompt: "do it", model: "p/m2", agent: "plan" }, 0).state;
    expect(pending).toEqual({ phase: "pending", prompt: "do it", model: "p/m2", agent: "plan" });
    const start: TurnInput = { type: "start", messageId: "msg_1", model: "p/default" };
    // Not aborted: the pending prompt starts, with its own model and agent.
    const started = step(pending, start, 5);
    expect(started.events[0]).toEqual({
      type: "turn.started",
      data: { prompt: "do it", model: "p/m2", agent: "plan", messageId: "msg_1" },
    });
    expect(started.status).toBe("running");
    // Aborted first: nothing to start.
    const dropped = step(pending, { type: "abort" }, 1);
    expect(dropped.state).toBeNull();
    expect(dropped.effects).toEqual([]);
    expect(step(dropped.state, start, 2).events).toEqual([]);
  });

  it("asks the harness to abort a running turn, and an abort it asked for is the turn's outcome", () => {
    const r = step(null, first, 0).state;
    const a = step(r, { type: "abort" }, 1);
    expect(a.effects).toEqual([{ type: "abort-harness" }]);
    // OpenCode's own error for the abort, then idle with an answer that carries no error yet.
    const e = step(a.state, { type: "error", error: aborted }, 2);
    const done = step(e.state, { type: "idle", answered: true }, 3000);
    expect(done.events[0]).toEqual({
      type: "turn.finished",
      data: { outcome: "aborted", error: aborted, durationMs: 3000, status: "idle" },
    });
    expect(done.effects).toEqual([{ type: "permissions-gone" }]);
    // An abort OpenCode made by itself (a superseded prompt) is not an outcome.
    const quiet = step(
      step(r, { type: "error", error: aborted }, 1).state,
      { type: "idle", answered: true, error: aborted },
      2,
    );
    expect(quiet.events[0]).toMatchObject({ type: "turn.finished", data: { outcome: "success" } });
    // An idle before this turn's prompt was taken up says nothing about it.
    expect(step(r, { type: "idle", answered: false }, 1).events).toEqual([]);
  });
});
