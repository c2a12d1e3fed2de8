import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Message, SessionEvent } from "@flotilla/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  assertGapFree,
  collectUntil,
  deadline,
  makeRepo,
  startTestServer,
  type TestServer,
  untilTurnFinished,
} from "../../../test/support.ts";
import { scenario } from "./scenario.ts";

let t: TestServer;
/** One repository, so one project and one harness for every test: none kills its harness or changes
 * the repository itself (each session works in its own workspace). The first test boots the harness
 * and the rest find it warm; a repository per test meant a harness boot per test, which on a loaded
 * machine overran the tests' 60 s waits for a first turn. */
let repo: string;
beforeAll(async () => {
  t = await startTestServer({ scenario });
  repo = makeRepo();
});
afterAll(async () => {
  await t?.close();
});

const textOf = (events: SessionEvent[]) =>
  events
    .filter((e) => e.type === "text.delta")
    .map((e) => (e.type === "text.delta" ? e.data.delta : ""))
    .join("");

describe("a session on the real OpenCode server", () => {
  it("edits a file in a real git worktree; the diff shows it; events are ordered and gap-free", {
    timeout: deadline(240_000),
  }, async () => {
    const s = await t.client.sessions.create({ repo, prompt: "write hello please" });
    expect(s.status).toBe("provisioning");
    expect(s.branch).toBe(`flotilla/${s.id}`);
    // The file's first session boots the harness first: up to its ready timeout (120 s) when loaded.
    const events = await collectUntil(t.client, s.id, untilTurnFinished(1), { timeoutMs: 180_000 });
    assertGapFree(events);
    const types = events.map((e) => e.type);
    expect(types.indexOf("turn.started")).toBeLessThan(types.indexOf("tool.updated"));
    const finished = events.find((e) => e.type === "turn.finished");
    expect(finished?.type === "turn.finished" && finished.data.outcome).toBe("success");
    const tool = events.filter((e) => e.type === "tool.updated").at(-1);
    expect(tool?.type === "tool.updated" && [tool.data.tool, tool.data.status]).toEqual([
      "write",
      "completed",
    ]);
    expect(events.some((e) => e.type === "file.edited" && e.data.path === "hello.txt")).toBe(true);
    expect(textOf(events)).toBe("I wrote hello.txt for you.");
    expect(events.some((e) => e.type === "usage")).toBe(true);

    // The file is in the session's worktree, not in the user's checkout.
    expect(readFileSync(join(s.workspacePath, "hello.txt"), "utf8")).toBe("hello from the agent\n");
    expect(() => readFileSync(join(repo, "hello.txt"))).toThrow();

    const diff = await t.client.sessions.diff(s.id);
    expect(diff.files).toEqual([
      { path: "hello.txt", status: "added", additions: 1, deletions: 0, binary: false },
    ]);
    expect(diff.patch).toContain("+hello from the agent");

    const after = await t.client.sessions.get(s.id);
    expect(after.status).toBe("idle");
    expect(after.lastSeq).toBe(events.at(-1)!.seq);
    expect(after.usage.tokens.input).toBeGreaterThan(0);

    const msgs = await t.client.sessions.messages(s.id);
    expect(msgs[0]).toMatchObject({ role: "user", parts: [{ type: "text", text: "write hello please" }] });
    expect(
      msgs.flatMap((m) => m.parts).some((p) => p.type === "text" && p.text === "I wrote hello.txt for you."),
    ).toBe(true);
  });

  it("resumes an SSE stream from Last-Event-ID with exactly the missing events", async () => {
    const s = await t.client.sessions.create({ repo, prompt: "edit readme now" });
    const all = await collectUntil(t.client, s.id, untilTurnFinished(1));
    const cut = Math.floor(all.length / 2);
    // A raw SSE request with the header, as a browser's EventSource sends it on reconnect.
    const res = await fetch(`${t.url}/sessions/${s.id}/events`, {
      headers: {
        authorization: `Bearer ${t.token}`,
        accept: "text/event-stream",
        "last-event-id": String(all[cut - 1]!.seq),
      },
    });
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const reader = res.body!.getReader();
    let text = "";
    const ids: number[] = [];
    while (!text.includes(": live")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    await reader.cancel();
    for (const m of text.matchAll(/^id: (\d+)$/gm)) ids.push(Number(m[1]));
    expect(ids).toEqual(all.slice(cut).map((e) => e.seq));
    // ?after= gives the same through the JSON form.
    const page = await t.client.sessions.events(s.id, { after: all[cut - 1]!.seq });
    expect(page.items.map((e) => e.id)).toEqual(all.slice(cut).map((e) => e.id));
  });

  it("aborts a turn mid-way, then a second turn works", async () => {
    const s = await t.client.sessions.create({ repo, prompt: "hang until aborted" });
    await collectUntil(t.client, s.id, (e) => e.type === "text.delta");
    const aborted = await t.client.sessions.abort(s.id);
    expect(aborted.status).toBe("idle");
    const events = await collectUntil(t.client, s.id, untilTurnFinished(1));
    const fin = events.find((e) => e.type === "turn.finished");
    expect(fin?.type === "turn.finished" && fin.data.outcome).toBe("aborted");
    await t.client.sessions.send(s.id, { text: "say hello" });
    const more = await collectUntil(t.client, s.id, untilTurnFinished(2));
    assertGapFree(more);
    // Nothing of the aborted turn trails its turn.finished.
    const end1 = more.findIndex((e) => e.type === "turn.finished");
    const start2 = more.findLastIndex((e) => e.type === "turn.started");
    expect(more.slice(end1 + 1, start2).map((e) => e.type)).toEqual(["session.status"]);
    const fin2 = more.filter((e) => e.type === "turn.finished")[1];
    expect(fin2?.type === "turn.finished" && fin2.data.outcome).toBe("success");
  });

  it("an abort that lands before the agent took up the prompt still stops it", async () => {
    const s = await t.client.sessions.create({ repo, prompt: "hang right away" });
    await collectUntil(t.client, s.id, (e) => e.type === "turn.started");
    const aborted = await t.client.sessions.abort(s.id);
    expect(aborted.status).toBe("idle");
    const events = await collectUntil(t.client, s.id, untilTurnFinished(1));
    const fin = events.find((e) => e.type === "turn.finished");
    expect(fin?.type === "turn.finished" && fin.data.outcome).toBe("aborted");
    // The agent really stopped: a new turn runs normally and only its own text follows.
    await t.client.sessions.send(s.id, { text: "say hello" });
    const more = await collectUntil(t.client, s.id, untilTurnFinished(2));
    const second = more.slice(more.findLastIndex((e) => e.type === "turn.started"));
    expect(textOf(second)).toBe("Hello from the scripted model.");
    expect(
      textOf(
        more.slice(
          0,
          more.findLastIndex((e) => e.type === "turn.started"),
        ),
      ),
    ).toBe("");
  });

  it("keeps context: a second turn depends on the first", async () => {
    const s = await t.client.sessions.create({
      repo,
      prompt: "remember the codeword: the codeword is ALBATROSS",
    });
    await collectUntil(t.client, s.id, untilTurnFinished(1));
    await t.client.sessions.send(s.id, { text: "what was the codeword?" });
    const events = await collectUntil(t.client, s.id, untilTurnFinished(2));
    const second = events.slice(events.findLastIndex((e) => e.type === "turn.started"));
    expect(textOf(second)).toBe("The codeword was ALBATROSS.");
  });

  it("records a turn that ends in a provider error as an error, not a success", async () => {
    const s = await t.client.sessions.create({ repo, prompt: "fail auth now" });
    const events = await collectUntil(t.client, s.id, untilTurnFinished(1));
    const fin = events.find((e) => e.type === "turn.finished");
    expect(fin?.type === "turn.finished" && fin.data.outcome).toBe("error");
    expect(fin?.type === "turn.finished" && fin.data.error?.message).toMatch(/invalid api key/);
    const got = await t.client.sessions.get(s.id);
    expect(got.error?.message).toMatch(/invalid api key/);
    // On the wire the error event is named `session.error`: a frame named `error` would reach a
    // browser EventSource's failure handler and make a healthy stream look broken.
    expect(events.some((e) => e.type === "error")).toBe(true);
    const ac = new AbortController();
    const res = await fetch(`${t.url}/sessions/${s.id}/events`, {
      headers: { accept: "text/event-stream", authorization: `Bearer ${t.token}` },
      signal: ac.signal,
    });
    let wire = "";
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      wire += decoder.decode(chunk, { stream: true });
      if (wire.includes(": live")) break;
    }
    ac.abort();
    const frames = wire.split("\n\n").filter((f) => f.includes("data:"));
    const names = frames.map((f) => /^event: (.*)$/m.exec(f)?.[1]);
    const errorFrame = frames.find((f) => f.includes('"type":"error"'));
    expect(errorFrame).toMatch(/^event: session\.error$/m);
    expect(names).not.toContain("error");
    expect(names).toContain("turn.finished");
  });

  it("forks a session into a new one that shares the workspace and reads as its parent did up to the fork point", async () => {
    const s = await t.client.sessions.create({
      repo,
      prompt: "remember the codeword: the codeword is PUFFIN",
    });
    await collectUntil(t.client, s.id, untilTurnFinished(1));
    await t.client.sessions.send(s.id, { text: "say something" });
    await collectUntil(t.client, s.id, untilTurnFinished(2));
    await t.client.sessions.send(s.id, { text: "what was the codeword?" });
    const parentEvents = await collectUntil(t.client, s.id, untilTurnFinished(3));
    const parent = await t.client.sessions.messages(s.id);
    const said = (ms: Message[]) =>
      ms.map((m) => `${m.role}: ${m.parts.map((p) => ("text" in p ? p.text : p.type)).join("")}`);
    expect(said(parent)).toEqual([
      "user: remember the codeword: the codeword is PUFFIN",
      "assistant: Noted, I will remember it.",
      "user: say something",
      "assistant: Hello from the scripted model.",
      "user: what was the codeword?",
      "assistant: The codeword was PUFFIN.",
    ]);

    // The whole history: the same conversation, in the same order, user messages included.
    const f = await t.client.sessions.fork(s.id);
    expect(f.parentId).toBe(s.id);
    expect(f.workspaceId).toBe(s.workspaceId);
    expect(said(await t.client.sessions.messages(f.id))).toEqual(said(parent));
    const copied = await collectUntil(t.client, f.id, (e) => e.type === "session.status");
    expect(
      copied.filter((e) => e.type === "turn.started").map((e) => e.type === "turn.started" && e.data.prompt),
    ).toEqual(["remember the codeword: the codeword is PUFFIN", "say something", "what was the codeword?"]);
    expect(textOf(copied)).toBe(textOf(parentEvents));
    expect(copied.at(-1)).toMatchObject({
      type: "session.status",
      data: {
        status: "idle",
        reason: expect.stringContaining(`forked from ${s.id}; it shares that session's workspace`),
      },
    });

    // Up to a message: the third prompt and what followed it are left out. The fork's own turn then
    // adds only itself (the harness's copies of the inherited messages are not read back twice).
    const third = parent[4]!.id;
    const g = await t.client.sessions.fork(s.id, third);
    expect(said(await t.client.sessions.messages(g.id))).toEqual(said(parent).slice(0, 4));
    const gBefore = (await t.client.sessions.get(g.id)).lastSeq;
    await t.client.sessions.send(g.id, { text: "what was the codeword?" });
    const own = await collectUntil(t.client, g.id, untilTurnFinished(1), { after: gBefore });
    expect(textOf(own)).toBe("The codeword was PUFFIN.");
    expect(said(await t.client.sessions.messages(g.id))).toEqual(said(parent));

    // A fork of the fork, cut at a message the fork inherited: its ids are the fork's own.
    const gMessages = await t.client.sessions.messages(g.id);
    const h = await t.client.sessions.fork(g.id, gMessages[2]!.id);
    expect(said(await t.client.sessions.messages(h.id))).toEqual(said(parent).slice(0, 2));
  });

  it("lists sessions with a status filter and cursor pages; delete can remove the workspace", async () => {
    const page1 = await t.client.sessions.list({ limit: 2 });
    expect(page1.items).toHaveLength(2);
    expect(page1.nextCursor).toBeTruthy();
    const page2 = await t.client.sessions.list({ limit: 2, cursor: page1.nextCursor! });
    expect(page2.items[0]!.id < page1.items[1]!.id).toBe(true);
    const idle = await t.client.sessions.list({ status: "idle", limit: 200 });
    expect(idle.items.every((x) => x.status === "idle")).toBe(true);

    const s = await t.client.sessions.create({ repo, prompt: "say hi" });
    await collectUntil(t.client, s.id, untilTurnFinished(1));
    const before = (await t.client.harnesses()).filter((h) => h.shardId === s.shardId && h.state === "ready");
    expect(before).toHaveLength(1);
    await t.client.sessions.delete(s.id, { workspace: true });
    // The harness may serve other workspaces of the shard: it stays for the pool to stop when idle.
    expect((await t.client.harnesses()).find((h) => h.id === before[0]!.id)?.state).toBe("ready");
    expect(() => readFileSync(join(s.workspacePath, "README.md"))).toThrow();
    await expect(t.client.sessions.get(s.id)).rejects.toMatchObject({ code: "not_found", status: 404 });
  });
});
