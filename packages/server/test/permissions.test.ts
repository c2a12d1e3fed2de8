import { existsSync, readFileSync } from "node:fs";
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
});
