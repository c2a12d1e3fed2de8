import type { Catalog } from "@flotilla/contracts";
import type { Config } from "../../config/config.ts";
import type { HarnessManager } from "../../harnesses/manager.ts";
import { defaultModel, WARMUP_PROVIDER } from "./config.ts";

/** How long `GET /models` waits for a harness before answering with the last list it knows. */
const ASK_MS = 2000;

/**
 * The provider/model catalog as a harness sees it (`/config/providers`), for `GET /models`.
 *
 * A harness that has just come up can take many seconds to answer (18 s was seen), and a wedged one
 * never does, so the ask is bounded: past ASK_MS the caller gets the last list a harness gave, or,
 * before any harness has answered, the list harnesses are configured with. One ask at a time: a
 * slow one is not repeated by every caller, and its answer serves the next.
 */
export class ModelCatalog {
  private last: Catalog | undefined;
  private asking: Promise<Catalog | undefined> | undefined;

  constructor(
    private readonly config: Config,
    private readonly harnesses: HarnessManager,
    private readonly demoProvider: string | undefined,
  ) {}

  async get(): Promise<Catalog> {
    this.asking ??= this.ask().finally(() => {
      this.asking = undefined;
    });
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((r) => {
      timer = setTimeout(() => r(undefined), ASK_MS);
    });
    const fresh = await Promise.race([this.asking, late]).finally(() => clearTimeout(timer));
    return fresh ?? this.last ?? this.configured();
  }

  private async ask(): Promise<Catalog | undefined> {
    const h = this.harnesses.all()[0];
    if (!h) return undefined;
    try {
      const res = await h.client.config.providers({ directory: h.cwd }, { throwOnError: true });
      const providers = (
        res.data as {
          providers: { id: string; name: string; models: Record<string, { id: string; name: string }> }[];
        }
      ).providers;
      this.last = {
        default: defaultModel(this.config) ?? null,
        models: providers
          .filter((p) => p.id !== WARMUP_PROVIDER)
          .flatMap((p) =>
            Object.values(p.models).map((m) => ({
              id: `${p.id}/${m.id}`,
              provider: p.id,
              name: m.name,
              demo: p.id === this.demoProvider,
            })),
          ),
      };
      return this.last;
    } catch {
      return undefined;
    }
  }

  /** With no harness to ask, the catalog is what harnesses are configured with. */
  private configured(): Catalog {
    return {
      default: defaultModel(this.config) ?? null,
      models: Object.entries(this.config.providers).flatMap(([pid, p]) =>
        Object.entries(p.models).map(([mid, m]) => ({
          id: `${pid}/${mid}`,
          provider: pid,
          name: m.name ?? mid,
          demo: pid === this.demoProvider,
        })),
      ),
    };
  }
}
