import type { EventBody, SessionEvent } from "@flotilla/contracts";
import { emptyTranscript, fold, messagesOf } from "@flotilla/contracts/transcript";
import { describe, expect, it } from "vitest";

// A budget.warning in the one fold the web UI and the server share: a row of its own (the session
// page shows it as a warning line naming the budget), and `spendSeq`, which tells the page's budget
// meter to read the spend again. Hand-made events only.

const event = (seq: number, body: EventBody): SessionEvent =>
  ({
    id: `evt_${seq}`,
    sessionId: "ses_1",
    seq,
    v: 1,
    at: new Date(Date.UTC(2026, 0, 1, 12, 0, seq)).toISOString(),
    ...body,
  }) as SessionEvent;

const usage: EventBody = {
  type: "usage",
  data: {
    messageId: "msg_a",
    tokens: { input: 10, output: 5, reasoning: 0, cacheRead: 0, cacheWrite: 0 },
    cost: 0.01,
  },
} as EventBody;
const warning: EventBody = {
  type: "budget.warning",
  data: {
    budget: "maxCostUsd",
    limit: 0.5,
    spent: 0.62,
    unit: "usd",
    taskId: "tsk_1",
    message: "task budget maxCostUsd $0.5 crossed ($0.62 spent): going on (warn mode)",
  },
};

describe("budget.warning in the transcript", () => {
  it("is a row naming the budget, the limit and the spend; usage and warnings move spendSeq", () => {
    const first = fold(emptyTranscript, [event(1, usage)]);
    expect(first.spendSeq).toBe(1);
    expect(first.rows).toEqual([]);
    const t = fold(first, [event(2, warning)]);
    expect(t.spendSeq).toBe(2);
    expect(t.rows).toEqual([
      {
        kind: "budget",
        key: "budget-2",
        budget: "maxCostUsd",
        limit: 0.5,
        spent: 0.62,
        unit: "usd",
        text: "task budget maxCostUsd $0.5 crossed ($0.62 spent): going on (warn mode)",
      },
    ]);
    // Replayed (a reconnect's overlap): nothing changes.
    expect(fold(t, [event(2, warning)])).toBe(t);
    // Not a message of the conversation's: the API's messages leave it out.
    expect(messagesOf(t)).toEqual([]);
  });

  it("skips a malformed one rather than breaking the transcript", () => {
    const bad = { type: "budget.warning", data: { budget: "maxCostUsd" } } as unknown as EventBody;
    const t = fold(emptyTranscript, [event(1, bad)]);
    expect(t.rows).toEqual([]);
    expect(t.lastSeq).toBe(1);
  });
});
