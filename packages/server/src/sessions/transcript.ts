import type { Message, SessionEvent } from "@flotilla/contracts";

/** The conversation as messages and parts, folded from a session's events (latest state of each part). */
export function transcript(events: SessionEvent[]): Message[] {
  const out: Message[] = [];
  const byId = new Map<string, Message>();
  const part = (messageId: string, at: string) => {
    let m = byId.get(messageId);
    if (!m) {
      m = { id: messageId, role: "assistant", at, parts: [] };
      byId.set(messageId, m);
      out.push(m);
    }
    return m;
  };
  for (const e of events) {
    if (e.type === "turn.started")
      out.push({
        id: e.data.messageId ?? e.id,
        role: "user",
        at: e.at,
        parts: [{ type: "text", id: e.id, text: e.data.prompt }],
      });
    else if (
      e.type === "text.delta" ||
      e.type === "reasoning.delta" ||
      e.type === "text.completed" ||
      e.type === "reasoning.completed"
    ) {
      const m = part(e.data.messageId, e.at);
      const kind = e.type.startsWith("text") ? "text" : "reasoning";
      let pt = m.parts.find((x) => x.id === e.data.partId) as
        | { type: "text" | "reasoning"; id: string; text: string }
        | undefined;
      if (!pt) {
        pt = { type: kind, id: e.data.partId, text: "" };
        m.parts.push(pt);
      }
      if ("delta" in e.data) pt.text += e.data.delta;
      else pt.text = e.data.text;
    } else if (e.type === "tool.updated") {
      const m = part(e.data.messageId, e.at);
      const { messageId: _m, partId, callId: _c, ...rest } = e.data;
      const i = m.parts.findIndex((x) => x.id === partId);
      const next = { type: "tool" as const, id: partId, ...rest };
      if (i >= 0) m.parts[i] = next;
      else m.parts.push(next);
    }
  }
  return out;
}
