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
  signal?: AbortSignal,
): Promise<void> {
  const slash = model.indexOf("/");
  const q = { directory };
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const enough = new Promise<void>((res) => {
    timer = setTimeout(res, waitMs);
    onAbort = () => res();
    signal?.addEventListener("abort", onAbort, { once: true });
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
  // The signal outlives this call (it is the caller's for its whole life): leave no listener on it.
  if (onAbort) signal?.removeEventListener("abort", onAbort);
}

/**
 * A throwaway first turn in a directory, on the warm-up model (an instant scripted reply on
 * loopback), then its session deleted. Prewarm's set-up does not cover all of a first prompt's
 * wait: inside the first turn OpenCode still builds per-directory state (measured ~1–1.5 s, and
 * several times that on a loaded machine) that only a completed turn leaves built. Spent here, on a
 * warm workspace no session has yet, it is off the next session's path. The turn may use no tool
 * (every permission denied) and its reply is one word. False, with the reason logged by the caller,
 * when it did not complete: the workspace is still good, only colder.
 */
export async function warmUpTurn(
  client: OpencodeClient,
  directory: string,
  model: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<boolean> {
  const slash = model.indexOf("/");
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  const onAbort = () => ac.abort();
  signal?.addEventListener("abort", onAbort, { once: true });
  let sessionID: string | undefined;
  try {
    const s = await client.session.create(
      {
        directory,
        title: "flotilla warm-up",
        permission: [{ permission: "*", pattern: "*", action: "deny" }],
      },
      { throwOnError: true, signal: ac.signal },
    );
    sessionID = s.data.id;
    await client.session.prompt(
      {
        sessionID,
        directory,
        model: { providerID: model.slice(0, slash), modelID: model.slice(slash + 1) },
        parts: [{ type: "text", text: "warm-up: reply ok" }],
      },
      { throwOnError: true, signal: ac.signal },
    );
    return true;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
    if (sessionID)
      await client.session.delete({ sessionID, directory }).catch(() => {
        // A warm-up session left behind is one more entry in the shard's OpenCode database, no more.
      });
  }
}
