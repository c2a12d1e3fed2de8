import type { OpencodeClient } from "@opencode-ai/sdk/v2";

/**
 * Has OpenCode set up a directory's agents, tools, providers, skills, commands and project state
 * before its first prompt. A first prompt in a new directory otherwise does this set-up itself, one
 * piece after another, before it asks the model (measured: 1.3–2 s of a ~3 s wait); asked for all
 * at once, alongside the creation of the agent's session, the pieces are built in parallel and the
 * prompt finds them ready (OpenCode builds each once per directory and shares the result).
 *
 * Every answer is ignored, failures included: the prompt builds whatever is missing itself. Nor is
 * an answer waited for past `waitMs` (a project's MCP server that never answers, say): the prompt
 * goes ahead, and OpenCode finishes the set-up on its way.
 */
export async function prewarm(
  client: OpencodeClient,
  directory: string,
  model: string,
  waitMs = 5000,
): Promise<void> {
  const slash = model.indexOf("/");
  const q = { directory };
  let timer: NodeJS.Timeout | undefined;
  const enough = new Promise<void>((res) => {
    timer = setTimeout(res, waitMs);
  });
  const all = Promise.allSettled([
    client.tool.list({ ...q, provider: model.slice(0, slash), model: model.slice(slash + 1) }),
    client.app.agents(q),
    client.app.skills(q),
    client.provider.list(q),
    client.command.list(q),
    client.vcs.get(q),
    client.file.status(q),
    client.project.current(q),
    client.mcp.status(q),
  ]);
  await Promise.race([all, enough]);
  clearTimeout(timer);
}
