import type { EventBody, Message, SessionEvent } from "@flotilla/contracts";
import { emptyTranscript, fold, messagesOf, type Row } from "@flotilla/contracts/transcript";
import { describe, expect, it } from "vitest";
import { transcript } from "../src/sessions/transcript.ts";

// The one fold of a session's events (the web UI's, streamed) and the server's messages, its
// projection. Hand-made events only: no harness, no database.

const at = (seq: number) => new Date(Date.UTC(2026, 0, 1, 12, 0, seq)).toISOString();
const event = (seq: number, body: EventBody): SessionEvent =>
  ({ id: `evt_${seq}`, sessionId: "ses_1", seq, v: 1, at: at(seq), ...body }) as SessionEvent;
/** Events numbered from 1 in the order given, as the log stores them. */
const log = (...bodies: EventBody[]) => bodies.map((b, i) => event(i + 1, b));

const rowsOf = (events: SessionEvent[]) => fold(emptyTranscript, events).rows;
const withoutKey = (rows: Row[]) => rows.map(({ key: _key, ...rest }) => rest);
/** A permission request about a call: the agent wants to edit a file. */
const askedAbout = (callId: string): EventBody => ({
  type: "permission.asked",
  data: { requestId: "per_1", permission: "edit", patterns: ["a.ts"], metadata: {}, always: [], callId },
});
const rateLimit = { name: "APIError", message: "Rate limit reached", retriable: false } as const;

describe("the transcript fold", () => {
  it("appends deltas and lets the completed text replace them", () => {
    const events = log(
      { type: "text.delta", data: { messageId: "msg_a", partId: "prt_t", delta: "Hel" } },
      { type: "text.delta", data: { messageId: "msg_a", partId: "prt_t", delta: "lo" } },
    );
    expect(rowsOf(events)).toEqual([{ kind: "text", key: "prt_t", text: "Hello", messageId: "msg_a" }]);
    events.push(
      event(3, {
        type: "text.completed",
        data: { messageId: "msg_a", partId: "prt_t", text: "Hello, world" },
      }),
    );
    expect(rowsOf(events)).toEqual([
      { kind: "text", key: "prt_t", text: "Hello, world", messageId: "msg_a" },
    ]);
  });

  it("says a completed text once however often it is delivered", () => {
    const completed: EventBody = {
      type: "text.completed",
      data: { messageId: "msg_a", partId: "prt_t", text: "Done." },
    };
    const events = log(completed, completed);
    const once = fold(emptyTranscript, events);
    expect(once.rows).toEqual([{ kind: "text", key: "prt_t", text: "Done.", messageId: "msg_a" }]);
    // A reconnect replays what was already folded: nothing changes, not even the object.
    expect(fold(once, events)).toBe(once);
    expect(transcript(events)[0]!.parts).toEqual([{ type: "text", id: "prt_t", text: "Done." }]);
  });

  it("replaces a tool call with its latest state", () => {
    const call = { messageId: "msg_a", partId: "prt_c", callId: "call_1", tool: "bash" };
    const rows = rowsOf(
      log(
        {
          type: "tool.updated",
          data: { ...call, status: "running", title: "Listing", input: { command: "ls" } },
        },
        {
          type: "tool.updated",
          data: { ...call, status: "completed", input: { command: "ls" }, output: "a\nb" },
        },
      ),
    );
    expect(rows).toEqual([
      {
        kind: "tool",
        key: "call_1",
        messageId: "msg_a",
        partId: "prt_c",
        tool: "bash",
        status: "completed",
        title: undefined,
        input: { command: "ls" },
        output: "a\nb",
        error: undefined,
      },
    ]);
  });

  it("counts a message's usage once when it is reported again: the last report wins", () => {
    const usage = (messageId: string, input: number, cost: number): EventBody => ({
      type: "usage",
      data: {
        messageId,
        model: "m",
        tokens: { input, output: input * 2, reasoning: 1, cacheRead: 3, cacheWrite: 4 },
        cost,
      },
    });
    const t = fold(
      emptyTranscript,
      log(usage("msg_a", 10, 0.5), usage("msg_a", 30, 1.5), usage("msg_b", 5, 0.25)),
    );
    expect(t.usage).toEqual({ input: 35, output: 70, reasoning: 2, cache: 14, cost: 1.75 });
  });

  it("marks a call rejected when its permission is rejected, and keeps it so as the call updates", () => {
    const call = { messageId: "msg_a", partId: "prt_c", callId: "call_1", tool: "edit" };
    const asked = askedAbout("call_1");
    const waiting = fold(
      emptyTranscript,
      log({ type: "tool.updated", data: { ...call, status: "pending" } }, asked),
    );
    expect(waiting.permissions.map((p) => p.requestId)).toEqual(["per_1"]);
    expect(waiting.rows[0]).not.toHaveProperty("rejected");

    const replied = fold(waiting, [
      event(3, { type: "permission.replied", data: { requestId: "per_1", reply: "reject" } }),
    ]);
    expect(replied.permissions).toEqual([]);
    expect(replied.rows[0]).toMatchObject({ kind: "tool", key: "call_1", rejected: true });
    const failed = fold(replied, [
      event(4, { type: "tool.updated", data: { ...call, status: "error", error: "rejected" } }),
    ]);
    expect(failed.rows[0]).toMatchObject({ status: "error", rejected: true });
    // What the person allowed is not marked.
    const allowed = fold(waiting, [
      event(3, { type: "permission.replied", data: { requestId: "per_1", reply: "once" } }),
    ]);
    expect(allowed.rows[0]).not.toHaveProperty("rejected");
  });

  it("says an error once per turn: the error, the turn's end and the status that follows", () => {
    const turn = (prompt: string): EventBody[] => [
      { type: "turn.started", data: { prompt } },
      { type: "error", data: rateLimit },
      { type: "turn.finished", data: { outcome: "error", error: rateLimit, status: "idle" } },
      { type: "session.status", data: { status: "idle", error: rateLimit } },
    ];
    const notices = (events: SessionEvent[]) => withoutKey(rowsOf(events)).filter((r) => r.kind === "notice");
    const said = {
      kind: "notice",
      tone: "error",
      text: "Turn failed: Rate limit reached",
      error: "Rate limit reached",
    };
    expect(notices(log(...turn("first")))).toEqual([said]);
    // A new turn may say it again, once.
    expect(notices(log(...turn("first"), ...turn("second")))).toEqual([said, said]);
  });

  it("keeps the latest status, its error and the latest todo list", () => {
    const t = fold(
      emptyTranscript,
      log(
        { type: "session.status", data: { status: "running" } },
        { type: "todo.updated", data: { todos: [{ content: "read", status: "in_progress" }] } },
        {
          type: "todo.updated",
          data: {
            todos: [
              { content: "read", status: "completed" },
              { content: "write", status: "pending", priority: "high" },
            ],
          },
        },
        { type: "session.status", data: { status: "waiting_permission" } },
      ),
    );
    expect(t.status).toBe("waiting_permission");
    expect(t.statusError).toBeUndefined();
    expect(t.todos).toEqual([
      { content: "read", status: "completed" },
      { content: "write", status: "pending", priority: "high" },
    ]);
    const failed = fold(t, [
      event(5, { type: "session.status", data: { status: "failed", error: rateLimit } }),
    ]);
    expect(failed.status).toBe("failed");
    expect(failed.statusError).toEqual(rateLimit);
    expect(failed.lastSeq).toBe(5);
  });
});

describe("the server's messages, projected from the fold", () => {
  const bash = { messageId: "msg_a1", partId: "prt_c1", callId: "call_1", tool: "bash" };
  const edit = { messageId: "msg_a3", partId: "prt_c2", callId: "call_2", tool: "edit" };
  const mixed = log(
    /* 1 */ { type: "session.status", data: { status: "running" } },
    /* 2 */ { type: "turn.started", data: { prompt: "Fix the bug", model: "m", messageId: "msg_u1" } },
    /* 3 */ { type: "reasoning.delta", data: { messageId: "msg_a1", partId: "prt_r1", delta: "Look" } },
    /* 4 */ { type: "reasoning.delta", data: { messageId: "msg_a1", partId: "prt_r1", delta: "ing" } },
    /* 5 */ { type: "text.delta", data: { messageId: "msg_a1", partId: "prt_t1", delta: "I will " } },
    /* 6 */ { type: "tool.updated", data: { ...bash, status: "pending", input: { command: "ls" } } },
    /* 7 */ {
      type: "tool.updated",
      data: { ...bash, status: "running", title: "Listing", input: { command: "ls" } },
    },
    /* 8 */ {
      type: "usage",
      data: {
        messageId: "msg_a1",
        model: "m",
        tokens: { input: 1, output: 2, reasoning: 0, cacheRead: 0, cacheWrite: 0 },
        cost: 0,
      },
    },
    /* 9 */ { type: "text.delta", data: { messageId: "msg_a1", partId: "prt_t1", delta: "fix it." } },
    /* 10 */ {
      type: "tool.updated",
      data: { ...bash, status: "completed", title: "ls", input: { command: "ls" }, output: "a\nb" },
    },
    /* 11 */ {
      type: "reasoning.completed",
      data: { messageId: "msg_a1", partId: "prt_r1", text: "Looking closely" },
    },
    /* 12 */ { type: "text.completed", data: { messageId: "msg_a2", partId: "prt_t2", text: "Done." } },
    /* 13 */ { type: "text.completed", data: { messageId: "msg_a2", partId: "prt_t2", text: "Done." } },
    /* 14 */ { type: "turn.finished", data: { outcome: "success", durationMs: 1200, status: "idle" } },
    /* 15 */ { type: "turn.started", data: { prompt: "And the tests?" } },
    /* 16 */ { type: "tool.updated", data: { ...edit, status: "running", input: { filePath: "a.ts" } } },
    /* 17 */ askedAbout("call_2"),
    /* 18 */ { type: "permission.replied", data: { requestId: "per_1", reply: "reject" } },
    /* 19 */ {
      type: "tool.updated",
      data: { ...edit, status: "error", input: { filePath: "a.ts" }, error: "rejected" },
    },
    /* 20 */ { type: "error", data: rateLimit },
    /* 21 */ { type: "turn.finished", data: { outcome: "error", error: rateLimit, status: "idle" } },
    /* 22 */ {
      type: "git",
      data: { action: "commit", branch: "flotilla/ses_1", commit: "abc123", summary: "Committed" },
    },
    /* 23 */ { type: "provider.retry", data: { attempt: 1, message: "overloaded" } },
  );

  // Written out from what the server's transcript() returned for these events before it became a
  // projection of the fold (packages/server/src/sessions/transcript.ts at HEAD).
  const expected: Message[] = [
    {
      id: "msg_u1",
      role: "user",
      at: at(2),
      parts: [{ type: "text", id: "evt_2", text: "Fix the bug" }],
    },
    {
      id: "msg_a1",
      role: "assistant",
      at: at(3),
      parts: [
        { type: "reasoning", id: "prt_r1", text: "Looking closely" },
        { type: "text", id: "prt_t1", text: "I will fix it." },
        {
          type: "tool",
          id: "prt_c1",
          tool: "bash",
          status: "completed",
          title: "ls",
          input: { command: "ls" },
          output: "a\nb",
        },
      ],
    },
    {
      id: "msg_a2",
      role: "assistant",
      at: at(12),
      parts: [{ type: "text", id: "prt_t2", text: "Done." }],
    },
    {
      id: "evt_15",
      role: "user",
      at: at(15),
      parts: [{ type: "text", id: "evt_15", text: "And the tests?" }],
    },
    {
      id: "msg_a3",
      role: "assistant",
      at: at(16),
      parts: [
        {
          type: "tool",
          id: "prt_c2",
          tool: "edit",
          status: "error",
          input: { filePath: "a.ts" },
          error: "rejected",
        },
      ],
    },
  ];

  it("returns exactly the messages the server returned before the fold was shared", () => {
    // Strict: a field the events left out must not appear, not even as undefined.
    expect(transcript(mixed)).toStrictEqual(expected);
  });

  it("is the same whether the events are folded at once or one at a time, as the UI streams them", () => {
    const streamed = mixed.reduce((t, e) => fold(t, [e]), emptyTranscript);
    expect(messagesOf(streamed)).toStrictEqual(expected);
    expect(streamed).toEqual(fold(emptyTranscript, mixed));
  });

  it("returns no messages for a session with no conversation", () => {
    expect(transcript([])).toEqual([]);
    expect(transcript(log({ type: "session.status", data: { status: "provisioning" } }))).toEqual([]);
  });
});
