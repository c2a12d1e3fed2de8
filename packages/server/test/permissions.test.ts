import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { SessionEvent } from "@flotilla/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  collectUntil,
  makeRepo,
  startTestServer,
  type TestServer,
  untilTurnFinished,
} from "../../../test/support.ts";
import { scenario } from "./scenario.ts";

let t: TestServer;
beforeAll(async () => {
  // "ask": edits and commands wait for a person.
  t = await startTestServer({ scenario, config: { permission: "ask" } });
});
afterAll(async () => {
  await t?.close();
});

const asked = (e: SessionEvent) => e.type === "permission.asked";

describe("permission requests over the API", () => {
  it("asks before an edit; approve once lets it run", async () => {
    const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "write hello please" });
    const upTo = await collectUntil(t.client, s.id, asked);
    const ask = upTo.at(-1)!;
    expect(ask.type === "permission.asked" && ask.data.permission).toBe("edit");
    expect((await t.client.sessions.get(s.id)).status).toBe("waiting_permission");
    const pending = await t.client.sessions.permissions(s.id);
    expect(pending.map((p) => p.id)).toEqual([ask.type === "permission.asked" ? ask.data.requestId : ""]);
    expect(existsSync(join(s.workspacePath, "hello.txt"))).toBe(false);

    await t.client.sessions.reply(s.id, pending[0]!.id, { reply: "once" });
    const events = await collectUntil(t.client, s.id, untilTurnFinished(1));
    const replied = events.find((e) => e.type === "permission.replied");
    expect(replied?.type === "permission.replied" && replied.data.reply).toBe("once");
    expect(
      events.some((e) => e.type === "session.status" && e.data.status === "running" && e.seq > replied!.seq),
    ).toBe(true);
    expect(readFileSync(join(s.workspacePath, "hello.txt"), "utf8")).toBe("hello from the agent\n");
    expect(await t.client.sessions.permissions(s.id)).toEqual([]);
    // Answering twice is refused, and changes nothing.
    await expect(t.client.sessions.reply(s.id, pending[0]!.id, { reply: "reject" })).rejects.toMatchObject({
      code: "conflict",
      status: 409,
    });
  });

  it("reject with a message: the tool does not run and the agent hears the message", async () => {
    const s = await t.client.sessions.create({ repo: makeRepo(), prompt: "run a command now" });
    const upTo = await collectUntil(t.client, s.id, asked);
    const ask = upTo.at(-1)!;
    expect(ask.type === "permission.asked" && ask.data.permission).toBe("bash");
    const requestId = ask.type === "permission.asked" ? ask.data.requestId : "";
    await t.client.sessions.reply(s.id, requestId, {
      reply: "reject",
      message: "not on this branch, please",
    });
    const events = await collectUntil(t.client, s.id, untilTurnFinished(1));
    const replied = events.find((e) => e.type === "permission.replied");
    expect(replied?.type === "permission.replied" && replied.data).toEqual({
      requestId,
      reply: "reject",
      message: "not on this branch, please",
    });
    const tool = events.filter((e) => e.type === "tool.updated").at(-1);
    expect(tool?.type === "tool.updated" && tool.data.status).toBe("error");
    expect(existsSync(join(s.workspacePath, "bash.txt"))).toBe(false);
    // The model's next request carried the rejection message back to it.
    const lastAgentRequest = t.model.requests.filter((r) => r.kind === "agent").at(-1)!;
    expect(JSON.stringify(lastAgentRequest.messages)).toContain("not on this branch, please");
  });

  it("refuses a reply to an unknown request, naming the field", async () => {
    const s = (await t.client.sessions.list({ limit: 1 })).items[0]!;
    await expect(t.client.sessions.reply(s.id, "per_nope", { reply: "once" })).rejects.toMatchObject({
      code: "not_found",
      field: "requestId",
    });
    await expect(
      // @ts-expect-error an invalid reply on purpose
      t.client.sessions.reply(s.id, "per_nope", { reply: "sometimes" }),
    ).rejects.toMatchObject({ code: "invalid_request", field: "reply" });
  });

  it("always allow is kept with the session's policy and still holds after a restart of the control plane", async () => {
    const repo = makeRepo();
    const s = await t.client.sessions.create({ repo, prompt: "run a command now" });
    const upTo = await collectUntil(t.client, s.id, asked);
    const ask = upTo.at(-1)!;
    if (ask.type !== "permission.asked") throw new Error("expected a permission ask");
    expect(ask.data.permission).toBe("bash");
    await t.client.sessions.reply(s.id, ask.data.requestId, { reply: "always" });
    const first = await collectUntil(t.client, s.id, untilTurnFinished(1));
    expect(first.filter((e) => e.type === "turn.finished").at(-1)).toMatchObject({
      data: { outcome: "success" },
    });
    // The answer is part of the session's policy: its patterns allowed on top of "ask".
    const policy = (await t.client.sessions.get(s.id)).permission;
    expect(policy).toMatchObject({ bash: { "*": "ask" }, edit: "ask" });
    const allowed = Object.entries((policy as { bash: Record<string, string> }).bash).filter(
      ([p, a]) => p !== "*" && a === "allow",
    );
    expect(allowed.map(([p]) => p)).toEqual(ask.data.always.length ? ask.data.always : ask.data.patterns);

    // A restart stops every harness: the next turn runs on a new one, which never heard the answer.
    await t.restart();
    rmSync(join(s.workspacePath, "bash.txt"));
    const after = (await t.client.sessions.get(s.id)).lastSeq;
    await t.client.sessions.send(s.id, { text: "run a command now" });
    const second = await collectUntil(t.client, s.id, (e, all) => asked(e) || untilTurnFinished(1)(e, all), {
      after,
    });
    expect(second.filter(asked)).toEqual([]);
    expect(second.filter((e) => e.type === "turn.finished").at(-1)).toMatchObject({
      data: { outcome: "success" },
    });
    expect(readFileSync(join(s.workspacePath, "bash.txt"), "utf8")).toBe("from-bash\n");
  });
});
