import type { Catalog } from "@flotilla/contracts";
import type { Config } from "../../config/config.ts";
import type { HarnessManager } from "../../harnesses/manager.ts";
import { defaultModel } from "./config.ts";

/**
 * The provider/model catalog as a harness sees it (`/config/providers`). With no harness running,
 * the catalog is what we configure harnesses with, so a client can still offer a choice.
 */
export async function catalog(
  config: Config,
  harnesses: HarnessManager,
  demoProvider: string | undefined,
): Promise<Catalog> {
  const def = defaultModel(config) ?? null;
  const h = harnesses.all()[0];
  if (h) {
    try {
      const res = await h.client.config.providers({ directory: h.cwd }, { throwOnError: true });
      const providers = (
        res.data as {
          providers: { id: string; name: string; models: Record<string, { id: string; name: string }> }[];
        }
      ).providers;
      return {
        default: def,
        models: providers.flatMap((p) =>
          Object.values(p.models).map((m) => ({
            id: `${p.id}/${m.id}`,
            provider: p.id,
            name: m.name,
            demo: p.id === demoProvider,
          })),
        ),
      };
    } catch {
      // fall through to the configured view
    }
  }
  return {
    default: def,
    models: Object.entries(config.providers).flatMap(([pid, p]) =>
      Object.entries(p.models).map(([mid, m]) => ({
        id: `${pid}/${mid}`,
        provider: pid,
        name: m.name ?? mid,
        demo: pid === demoProvider,
      })),
    ),
  };
}
