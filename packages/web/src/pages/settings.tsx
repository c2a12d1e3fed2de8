import type { Catalog, TokenInfo } from "@flotilla/client";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Link } from "@tanstack/react-router";
import { type FormEvent, type ReactNode, useState } from "react";
import { api } from "../api.ts";
import { Button, Card, ErrorNote, inputClass, timeAgo } from "../ui.tsx";

export const isForbidden = (e: unknown) =>
  typeof e === "object" && e !== null && (e as { status?: number }).status === 403;

function Section({
  id,
  title,
  note,
  children,
}: {
  id: string;
  title: string;
  note?: ReactNode;
  children: ReactNode;
}) {
  return (
    <section aria-labelledby={id} className="grid gap-3">
      <div>
        <h2 id={id} className="font-semibold">
          {title}
        </h2>
        {note && <p className="mt-0.5 text-sm text-stone-500 dark:text-stone-400">{note}</p>}
      </div>
      {children}
    </section>
  );
}

export function Pill({
  children,
  tone = "plain",
}: {
  children: ReactNode;
  tone?: "plain" | "dark" | "warn" | "muted";
}) {
  const cls = {
    plain: "bg-stone-100 text-stone-700 dark:bg-stone-800 dark:text-stone-300",
    dark: "bg-stone-900 text-white dark:bg-stone-100 dark:text-stone-900",
    warn: "bg-amber-100 text-amber-900 dark:bg-amber-900/50 dark:text-amber-200",
    muted: "bg-stone-100 text-stone-500 line-through dark:bg-stone-900 dark:text-stone-500",
  }[tone];
  return (
    <span className={`inline-flex shrink-0 items-center rounded-full px-2 py-0.5 text-xs font-medium ${cls}`}>
      {children}
    </span>
  );
}

export function When({ iso, never = "never" }: { iso: string | null; never?: string }) {
  if (!iso) return <span>{never}</span>;
  return (
    <time dateTime={iso} title={new Date(iso).toLocaleString()}>
      {timeAgo(iso)}
    </time>
  );
}

// ---- tabs ----------------------------------------------------------------------------------------

const tab =
  "border-b-2 border-transparent px-1 pb-2 text-sm text-stone-600 hover:text-stone-900 dark:text-stone-400 dark:hover:text-white";
const activeTab = "!border-stone-900 font-medium !text-stone-900 dark:!border-white dark:!text-white";

/** Settings has three pages: who you are, tokens and models; the secret store; the audit log. */
export function SettingsTabs() {
  return (
    <div className="grid gap-3">
      <h1 className="text-lg font-semibold tracking-tight">Settings</h1>
      <nav aria-label="Settings" className="flex gap-5 border-b border-stone-200 dark:border-stone-800">
        <Link
          to="/settings"
          activeOptions={{ exact: true }}
          className={tab}
          activeProps={{ className: activeTab }}
        >
          General
        </Link>
        <Link to="/settings/secrets" className={tab} activeProps={{ className: activeTab }}>
          Secrets
        </Link>
        <Link to="/settings/audit" className={tab} activeProps={{ className: activeTab }}>
          Audit
        </Link>
      </nav>
    </div>
  );
}

// ---- who am I ------------------------------------------------------------------------------------

function WhoAmI({ tokens }: { tokens: TokenInfo[] | undefined }) {
  const me = useQuery({ queryKey: ["whoami"], queryFn: api.auth.whoami });
  const mine = tokens?.find((t) => t.id === me.data?.tokenId);
  return (
    <Section id="whoami-heading" title="You">
      <Card>
        <ErrorNote error={me.error} />
        {me.data && (
          <dl data-testid="whoami" className="grid gap-x-6 gap-y-2 text-sm sm:grid-cols-[max-content_1fr]">
            <dt className="text-stone-500">Token</dt>
            <dd className="min-w-0 truncate">
              {mine ? <span className="font-medium">{mine.name}</span> : null}{" "}
              <span className="font-mono text-xs text-stone-500">{me.data.tokenId}</span>
            </dd>
            <dt className="text-stone-500">Role</dt>
            <dd>
              <Pill tone={me.data.role === "admin" ? "dark" : "plain"}>{me.data.role}</Pill>
            </dd>
            <dt className="text-stone-500">Signed in by</dt>
            <dd>
              {me.data.via === "cookie" ? "browser session" : "bearer token"}
              {me.data.expiresAt && (
                <span className="text-stone-500"> · ends {new Date(me.data.expiresAt).toLocaleString()}</span>
              )}
            </dd>
          </dl>
        )}
      </Card>
    </Section>
  );
}

// ---- tokens --------------------------------------------------------------------------------------

function NewTokenPanel({ token, name, onDone }: { token: string; name: string; onDone: () => void }) {
  const [copied, setCopied] = useState<"yes" | "no" | undefined>();
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(token);
      setCopied("yes");
    } catch {
      // Clipboard access can be refused (permissions, an insecure origin): the text stays selectable.
      setCopied("no");
    }
  };
  return (
    <div
      role="status"
      aria-label="New token"
      className="grid gap-3 rounded-lg border border-emerald-300 bg-emerald-50 p-4 dark:border-emerald-800 dark:bg-emerald-950/40"
    >
      <p className="text-sm font-medium text-emerald-900 dark:text-emerald-100">
        Token “{name}” created. Copy it now: you will not see it again.
      </p>
      <div className="flex flex-col gap-2 sm:flex-row">
        <input
          readOnly
          aria-label="New token value"
          data-testid="new-token"
          value={token}
          onFocus={(e) => e.currentTarget.select()}
          className={`${inputClass} font-mono`}
        />
        <div className="flex shrink-0 gap-2">
          <Button tone="primary" onClick={copy}>
            {copied === "yes" ? "Copied" : "Copy"}
          </Button>
          <Button onClick={onDone}>Done</Button>
        </div>
      </div>
      {copied === "no" && (
        <p className="text-xs text-stone-600 dark:text-stone-400">
          The browser refused the clipboard: select the text and copy it by hand.
        </p>
      )}
      <p className="text-xs text-stone-600 dark:text-stone-400">
        Flotilla keeps only a hash of it. Use it as <code className="font-mono">Authorization: Bearer …</code>{" "}
        or with <code className="font-mono">flotilla --token</code>.
      </p>
    </div>
  );
}

function CreateToken() {
  const qc = useQueryClient();
  const [name, setName] = useState("");
  const [role, setRole] = useState<"member" | "admin">("member");
  const [made, setMade] = useState<{ token: string; name: string } | undefined>();
  const create = useMutation({
    mutationFn: () => api.tokens.create(name.trim(), role),
    onSuccess: (r) => {
      // Held only in this component's state: never logged, never cached with the query data.
      setMade({ token: r.token, name: r.info.name });
      setName("");
      void qc.invalidateQueries({ queryKey: ["tokens"] });
    },
  });
  const submit = (ev: FormEvent) => {
    ev.preventDefault();
    setMade(undefined);
    create.mutate();
  };
  return (
    <div className="grid gap-3">
      <form
        onSubmit={submit}
        aria-label="Create token"
        className="flex flex-col gap-3 sm:flex-row sm:items-end"
      >
        <label className="grid min-w-0 flex-1 gap-1 text-sm">
          <span className="font-medium">Name</span>
          <input
            name="token-name"
            required
            maxLength={100}
            placeholder="e.g. ci bot"
            value={name}
            onChange={(e) => setName(e.target.value)}
            className={inputClass}
          />
        </label>
        <label className="grid gap-1 text-sm sm:w-36">
          <span className="font-medium">Role</span>
          <select
            name="token-role"
            value={role}
            onChange={(e) => setRole(e.target.value as "member" | "admin")}
            className={inputClass}
          >
            <option value="member">member</option>
            <option value="admin">admin</option>
          </select>
        </label>
        <Button tone="primary" type="submit" disabled={create.isPending || !name.trim()}>
          {create.isPending ? "Creating…" : "Create token"}
        </Button>
      </form>
      <ErrorNote error={create.error} />
      {made && <NewTokenPanel token={made.token} name={made.name} onDone={() => setMade(undefined)} />}
    </div>
  );
}

function TokenRow({ t, mine }: { t: TokenInfo; mine: boolean }) {
  const qc = useQueryClient();
  const [confirming, setConfirming] = useState(false);
  const revoke = useMutation({
    mutationFn: () => api.tokens.revoke(t.id),
    onSuccess: () => {
      setConfirming(false);
      void qc.invalidateQueries({ queryKey: ["tokens"] });
    },
  });
  return (
    <li data-testid="token-row" className="grid gap-2 px-4 py-3">
      <div className="flex flex-col gap-2 sm:flex-row sm:items-center sm:gap-4">
        <div className="min-w-0 flex-1">
          <div className="flex min-w-0 flex-wrap items-center gap-2">
            <span className={`truncate font-medium ${t.revokedAt ? "text-stone-500" : ""}`}>{t.name}</span>
            <Pill tone={t.role === "admin" ? "dark" : "plain"}>{t.role}</Pill>
            {mine && <Pill tone="warn">you</Pill>}
            {t.revokedAt && <Pill tone="muted">revoked</Pill>}
          </div>
          <div className="mt-0.5 flex flex-wrap gap-x-3 gap-y-0.5 text-xs text-stone-500">
            <span className="font-mono">{t.prefix}…</span>
            <span>
              created <When iso={t.createdAt} />
            </span>
            <span>
              last used <When iso={t.lastUsedAt} />
            </span>
            {t.revokedAt && (
              <span>
                revoked <When iso={t.revokedAt} />
              </span>
            )}
          </div>
        </div>
        {!t.revokedAt && !confirming && (
          <Button tone="danger" className="self-start sm:self-auto" onClick={() => setConfirming(true)}>
            Revoke
          </Button>
        )}
      </div>
      {confirming && (
        <div
          role="alertdialog"
          aria-label={`Revoke ${t.name}`}
          className="flex flex-col gap-2 rounded-md border border-red-200 bg-red-50 p-3 text-sm sm:flex-row sm:items-center dark:border-red-900 dark:bg-red-950/40"
        >
          <p className="flex-1 text-red-900 dark:text-red-200">
            Revoke “{t.name}”? Anything using it gets 401 from now on.
            {mine && " It is the token you are logged in with: this page will log out."}
          </p>
          <div className="flex shrink-0 gap-2">
            <Button onClick={() => setConfirming(false)} disabled={revoke.isPending}>
              Cancel
            </Button>
            <Button tone="danger" onClick={() => revoke.mutate()} disabled={revoke.isPending}>
              {revoke.isPending ? "Revoking…" : "Revoke token"}
            </Button>
          </div>
        </div>
      )}
      <ErrorNote error={revoke.error} />
    </li>
  );
}

function Tokens({ list, myId }: { list: ReturnType<typeof useTokens>; myId: string | undefined }) {
  if (isForbidden(list.error))
    return (
      <Section id="tokens-heading" title="API tokens">
        <Card>
          <p className="text-sm text-stone-500">Only admins manage tokens. Ask an admin for one.</p>
        </Card>
      </Section>
    );
  const items = list.data ?? [];
  // Live tokens first (newest first), then the revoked ones.
  const sorted = [...items].sort(
    (a, b) => Number(!!a.revokedAt) - Number(!!b.revokedAt) || b.createdAt.localeCompare(a.createdAt),
  );
  return (
    <Section
      id="tokens-heading"
      title="API tokens"
      note="For the CLI, scripts and CI. Members use the API; admins also manage tokens."
    >
      <Card>
        <CreateToken />
      </Card>
      <ErrorNote error={list.error} />
      {list.isPending && <p className="text-sm text-stone-500">Loading tokens…</p>}
      {list.data && items.length === 0 && <p className="text-sm text-stone-500">No tokens.</p>}
      {sorted.length > 0 && (
        <ul
          aria-label="Tokens"
          className="divide-y divide-stone-200 overflow-hidden rounded-lg border border-stone-200 bg-white dark:divide-stone-800 dark:border-stone-800 dark:bg-stone-900"
        >
          {sorted.map((t) => (
            <TokenRow key={t.id} t={t} mine={t.id === myId} />
          ))}
        </ul>
      )}
    </Section>
  );
}

// ---- models --------------------------------------------------------------------------------------

function Models() {
  const models = useQuery({ queryKey: ["models"], queryFn: api.models });
  const byProvider = new Map<string, Catalog["models"]>();
  for (const m of models.data?.models ?? [])
    byProvider.set(m.provider, [...(byProvider.get(m.provider) ?? []), m]);
  return (
    <Section
      id="models-heading"
      title="Providers and models"
      note={
        <>
          What the harnesses offer. Providers are configured on the server (
          <code className="font-mono">providers</code> in config.yaml, or a provider's API key in its
          environment); keys never reach this page.
        </>
      }
    >
      <ErrorNote error={models.error} />
      {models.isPending && <p className="text-sm text-stone-500">Loading models…</p>}
      {models.data && (
        <Card className="grid gap-4">
          <div className="flex flex-wrap items-baseline gap-2 text-sm">
            <span className="text-stone-500">Default model</span>
            <code data-testid="default-model" className="font-mono">
              {models.data.default ?? "none"}
            </code>
          </div>
          {byProvider.size === 0 && <p className="text-sm text-stone-500">No models are configured.</p>}
          {[...byProvider].map(([provider, ms]) => (
            <div key={provider}>
              <h3 className="text-xs font-medium uppercase tracking-wide text-stone-500">{provider}</h3>
              <ul
                aria-label={`${provider} models`}
                className="mt-1 divide-y divide-stone-100 dark:divide-stone-800"
              >
                {ms.map((m) => (
                  <li
                    key={m.id}
                    data-testid="model"
                    className="flex flex-wrap items-center gap-2 py-1.5 text-sm"
                  >
                    <span className="font-medium">{m.name}</span>
                    <code className="font-mono text-xs text-stone-500">{m.id}</code>
                    {m.id === models.data.default && <Pill tone="dark">default</Pill>}
                    {m.demo && (
                      <span title="A scripted stand-in that answers without a real LLM">
                        <Pill tone="warn">demo, not an LLM</Pill>
                      </span>
                    )}
                  </li>
                ))}
              </ul>
            </div>
          ))}
        </Card>
      )}
    </Section>
  );
}

// ---- page ----------------------------------------------------------------------------------------

// A member gets 403 here; that is an answer, not an error worth retrying.
const useTokens = () =>
  useQuery({ queryKey: ["tokens"], queryFn: api.tokens.list, retry: (n, e) => !isForbidden(e) && n < 2 });

export function SettingsPage() {
  const tokens = useTokens();
  const me = useQuery({ queryKey: ["whoami"], queryFn: api.auth.whoami });
  return (
    <div className="grid grid-cols-[minmax(0,1fr)] gap-8">
      <SettingsTabs />
      <WhoAmI tokens={tokens.data} />
      <Tokens list={tokens} myId={me.data?.tokenId} />
      <Models />
    </div>
  );
}
