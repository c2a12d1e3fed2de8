import type { EventBody } from "@flotilla/contracts";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type KnownPart, type OcPart, Translator } from "../src/agents/opencode/translate.ts";

// The translator's resync, alone: a part caught mid-stream by a dropped stream (or a restarted
// control plane) must still be told exactly once, whole, in order. No harness, no database.

const part = (text: string, done: boolean): OcPart => ({
  id: "prt_1",
  sessionID: "ses_oc",
  messageID: "msg_1",
  type: "text",
  text,
  time: { start: 1, ...(done ? { end: 2 } : {}) },
});

/** What the log says of the part: every delta joined, and the completions. */
function told(events: EventBody[]) {
  let text = "";
  const completed: string[] = [];
  for (const e of events) {
    if (e.type === "text.delta") text += e.data.delta;
    if (e.type === "text.completed") completed.push(e.data.text);
  }
  return { text, completed };
}

describe("the translator's resync", () => {
  it("tells a part caught mid-stream exactly once, however the stream was cut", () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 12 }),
        fc.nat(),
        fc.nat(),
        fc.boolean(),
        (chunks, cutAt, readAt, restarted) => {
          const full = chunks.join("");
          const cut = cutAt % (chunks.length + 1); // deltas heard before the stream dropped
          const read = cut + (readAt % (chunks.length - cut + 1)); // how far the harness had got at read-back
          const before = new Translator();
          const events: EventBody[] = [];
          for (const c of chunks.slice(0, cut)) events.push(...before.delta("msg_1", "prt_1", "text", c));
          // After the drop: the same translator (a reconnect) or a new one (a restart), seeded from the log.
          const after = restarted ? new Translator() : before;
          const known = new Map<string, KnownPart>();
          if (cut > 0)
            known.set("prt_1", { kind: "text", status: "streaming", textLen: told(events).text.length });
          after.seed(known);
          events.push(...after.part(part(chunks.slice(0, read).join(""), false), true));
          // The live stream goes on from where the harness is: its deltas' offsets are unknown here.
          for (const c of chunks.slice(read)) events.push(...after.delta("msg_1", "prt_1", "text", c));
          events.push(...after.part(part(full, true)));
          // A repeat of the completion (read back again at the turn's end) adds nothing.
          events.push(...after.part(part(full, true), true));
          const { text, completed } = told(events);
          expect(text).toBe(full);
          expect(completed).toEqual([full]);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("says a tool's state once per change, also when read back after a drop", () => {
    const tool = (status: string): OcPart => ({
      id: "prt_t",
      sessionID: "ses_oc",
      messageID: "msg_1",
      type: "tool",
      callID: "call_1",
      tool: "bash",
      state: { status, input: { command: "ls" } },
    });
    const t = new Translator();
    expect(t.part(tool("running"))).toHaveLength(1);
    expect(t.part(tool("running"))).toEqual([]);
    const fresh = new Translator();
    fresh.seed(new Map([["prt_t", { kind: "tool", status: "running", textLen: 0 }]]));
    expect(fresh.part(tool("running"), true)).toEqual([]);
    expect(fresh.part(tool("completed"), true)).toMatchObject([
      { type: "tool.updated", data: { status: "completed", callId: "call_1" } },
    ]);
  });

  it("counts a message's usage once, and never a user message's parts", () => {
    const t = new Translator();
    t.message({ id: "msg_u", sessionID: "s", role: "user", time: { created: 1 } });
    expect(t.part({ ...part("my prompt", true), messageID: "msg_u" })).toEqual([]);
    const done = {
      id: "msg_1",
      sessionID: "s",
      role: "assistant" as const,
      time: { created: 1, completed: 2 },
      providerID: "p",
      modelID: "m",
      cost: 0.5,
      tokens: { input: 3, output: 4, reasoning: 0, cache: { read: 1, write: 0 } },
    };
    expect(t.message(done)).toMatchObject([{ type: "usage", data: { model: "p/m", cost: 0.5 } }]);
    expect(t.message(done)).toEqual([]);
    const seeded = new Translator();
    seeded.seed(new Map([["msg_1", { kind: "message", status: "completed", textLen: 0 }]]));
    expect(seeded.message(done)).toEqual([]);
  });
});
