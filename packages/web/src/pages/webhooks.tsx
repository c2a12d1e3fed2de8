import type {
  CreatedWebhook,
  DeliveryPage,
  DeliveryStatus,
  Webhook,
  WebhookEventPattern,
} from "@flotilla/contracts";
import { DEFAULT_WEBHOOK_EVENTS } from "@flotilla/contracts/light";
import {
  type InfiniteData,
  useInfiniteQuery,
  useMutation,
  useQuery,
  useQueryClient,
} from "@tanstack/react-query";
import { Link, useParams } from "@tanstack/react-router";
import { type FormEvent, type ReactNode, useState } from "react";
import { api } from "../api.ts";
import { DeliveryList } from "../tasks/deliveries.tsx";
import {
  controlProps,
  Field,
  fieldErrorOf,
  listClass,
  SectionTitle,
  TASK_STATES,
  taskStateLabel,
  When,
} from "../tasks/task-ui.tsx";
import { Button, Card, ErrorNote, inputClass, LoadMore, timeAgo } from "../ui.tsx";

const FIELDS = new Set(["url", "events", "projectId"]);

function EventChips({ events }: { events: string[] }) {
  return (
    <span className="flex flex-wrap gap-1">
      {events.map((e) => (
        <span
          key={e}
          className="rounded bg-stone-100 px-1.5 py-0.5 font-mono text-xs text-stone-700 dark:bg-stone-800 dark:text-stone-300"
        >
          {e}
        </span>
      ))}
    </span>
  );
}

function Check({
  checked,
  disabled,
  onChange,
  children,
}: {
  checked: boolean;
  disabled?: boolean;
  onChange: (on: boolean) => void;
  children: ReactNode;
}) {
  return (
    <label className={`flex items-center gap-2 text-sm ${disabled ? "opacity-50" : ""}`}>
      <input
        type="checkbox"
        checked={checked}
        disabled={disabled}
        onChange={(e) => onChange(e.target.checked)}
        className="size-4 rounded border-stone-300 accent-stone-900 dark:accent-stone-100"
      />
      {children}
    </label>
  );
}

function CreateWebhookForm({ onCreated }: { onCreated: (w: CreatedWebhook) => void }) {
  const qc = useQueryClient();
  const [url, setUrl] = useState("");
  const [projectId, setProjectId] = useState("");
  const [events, setEvents] = useState<Set<WebhookEventPattern>>(() => new Set(DEFAULT_WEBHOOK_EVENTS));
  const create = useMutation({
    mutationFn: () =>
      api.webhooks.create({
        url: url.trim(),
        // task.* already covers every task.<state>: send what the subscription will really match.
        events: [...events].filter((e) => !(events.has("task.*") && e.startsWith("task.") && e !== "task.*")),
        ...(projectId.trim() ? { projectId: projectId.trim() } : {}),
      }),
    onSuccess: (w) => {
      setUrl("");
      onCreated(w);
      void qc.invalidateQueries({ queryKey: ["webhooks"] });
    },
  });
  const toggle = (e: WebhookEventPattern, on: boolean) =>
    setEvents((prev) => {
      const next = new Set(prev);
      if (on) next.add(e);
      else next.delete(e);
      return next;
    });
  const apiError = fieldErrorOf(create.error);
  const errorFor = (f: string) => (apiError?.field === f ? apiError.message : undefined);
  const formError = create.error && !(apiError && FIELDS.has(apiError.field)) ? create.error : null;
  const submit = (ev: FormEvent) => {
    ev.preventDefault();
    create.mutate();
  };
  const allTasks = events.has("task.*");
  return (
    <Card>
      <h2 className="font-semibold">New webhook</h2>
      <p className="mt-0.5 text-xs text-stone-500">
        Flotilla POSTs a signed JSON body to the URL on every matching event, retrying with back-off until it
        answers 2xx.
      </p>
      <form onSubmit={submit} className="mt-4 grid gap-4" aria-label="New webhook">
        <div className="grid gap-4 sm:grid-cols-[minmax(0,2fr)_minmax(0,1fr)]">
          <Field id="webhook-url" label="URL" error={errorFor("url")}>
            <input
              {...controlProps("webhook-url", errorFor("url"))}
              name="url"
              type="url"
              required
              maxLength={2048}
              placeholder="https://example.com/hooks/flotilla"
              value={url}
              onChange={(e) => setUrl(e.target.value)}
              className={`${inputClass} font-mono`}
            />
          </Field>
          <Field
            id="webhook-project"
            label="Project id"
            error={errorFor("projectId")}
            hint="Optional: blank means every project"
          >
            <input
              {...controlProps("webhook-project", errorFor("projectId"), "hint")}
              name="projectId"
              placeholder="prj_…"
              value={projectId}
              onChange={(e) => setProjectId(e.target.value)}
              className={`${inputClass} font-mono`}
            />
          </Field>
        </div>
        <fieldset
          className="grid gap-2"
          aria-describedby={errorFor("events") ? "webhook-events-error" : undefined}
        >
          <legend className="mb-1 text-sm font-medium">Events</legend>
          <Check checked={allTasks} onChange={(on) => toggle("task.*", on)}>
            Every task change <code className="font-mono text-xs text-stone-500">task.*</code>
          </Check>
          <div className="flex flex-wrap gap-x-4 gap-y-2 pl-6">
            {TASK_STATES.map((s) => {
              const e = `task.${s}` as WebhookEventPattern;
              return (
                <Check
                  key={s}
                  checked={allTasks || events.has(e)}
                  disabled={allTasks}
                  onChange={(on) => toggle(e, on)}
                >
                  <span className="sr-only">Task </span>
                  {taskStateLabel(s)} <code className="sr-only">{e}</code>
                </Check>
              );
            })}
          </div>
          <Check checked={events.has("session.status")} onChange={(on) => toggle("session.status", on)}>
            Session status changes <code className="font-mono text-xs text-stone-500">session.status</code>
          </Check>
          <Check checked={events.has("budget.warning")} onChange={(on) => toggle("budget.warning", on)}>
            Budget warnings <code className="font-mono text-xs text-stone-500">budget.warning</code>
          </Check>
          {errorFor("events") && (
            <p id="webhook-events-error" className="text-xs text-red-700 dark:text-red-300">
              {errorFor("events")}
            </p>
          )}
        </fieldset>
        <div>
          <Button
            tone="primary"
            type="submit"
            disabled={create.isPending || !url.trim() || events.size === 0}
          >
            {create.isPending ? "Creating…" : "Create webhook"}
          </Button>
        </div>
        <ErrorNote error={formError} />
      </form>
    </Card>
  );
}

/** The one time a subscription's secret can be seen: it is not stored anywhere the API can read back. */
function SecretOnce({ w, onDone }: { w: CreatedWebhook; onDone: () => void }) {
  const [copied, setCopied] = useState<"yes" | "no">();
  const copy = () =>
    navigator.clipboard.writeText(w.secret).then(
      () => setCopied("yes"),
      () => setCopied("no"),
    );
  return (
    <section
      aria-label="Signing secret"
      className="grid gap-2 rounded-lg border-2 border-amber-400 bg-amber-50 p-4 dark:border-amber-600 dark:bg-amber-950/40"
    >
      <p className="text-sm font-semibold text-amber-950 dark:text-amber-100">
        Store this signing secret now: it is shown only once.
      </p>
      <p className="text-xs text-amber-900 dark:text-amber-200">
        Deliveries to <span className="break-all font-mono">{w.url}</span> carry{" "}
        <code className="font-mono">
          x-flotilla-signature: sha256=HMAC-SHA256(secret, timestamp + "." + body)
        </code>{" "}
        with the timestamp in <code className="font-mono">x-flotilla-timestamp</code>. Lost it? Delete the
        webhook and create a new one.
      </p>
      <div className="flex flex-wrap items-center gap-2">
        <code
          data-testid="webhook-secret"
          className="w-full min-w-0 break-all rounded-md sm:w-auto sm:flex-1 bg-white px-3 py-2 font-mono text-xs dark:bg-stone-950"
        >
          {w.secret}
        </code>
        <Button onClick={copy}>{copied === "yes" ? "Copied" : "Copy"}</Button>
        <Button tone="primary" onClick={onDone}>
          I have stored it
        </Button>
      </div>
      {copied === "no" && (
        <p className="text-xs text-amber-900 dark:text-amber-200">
          Copying was refused: select the text instead.
        </p>
      )}
    </section>
  );
}

function WebhookRow({ w }: { w: Webhook }) {
  const qc = useQueryClient();
  const [confirming, setConfirming] = useState(false);
  const del = useMutation({
    mutationFn: () => api.webhooks.delete(w.id),
    onSuccess: () => {
      qc.setQueryData<Webhook[]>(["webhooks"], (old) => old?.filter((x) => x.id !== w.id));
      void qc.invalidateQueries({ queryKey: ["webhooks"] });
    },
  });
  return (
    <li aria-label={w.url} className="grid gap-2 px-4 py-3">
      <div className="flex flex-col gap-2 sm:flex-row sm:items-center sm:gap-4">
        <div className="grid min-w-0 flex-1 gap-1">
          <Link
            to="/hooks/$id"
            params={{ id: w.id }}
            className="truncate font-mono text-sm font-medium hover:underline"
            title="Delivery log"
          >
            {w.url}
          </Link>
          <span className="flex flex-wrap items-center gap-2 text-xs text-stone-500">
            <EventChips events={w.events} />
            <span>{w.projectId ? <span className="font-mono">{w.projectId}</span> : "all projects"}</span>
            <When iso={w.createdAt}>{timeAgo(w.createdAt)}</When>
          </span>
        </div>
        <div className="flex items-center gap-2">
          <Link
            to="/hooks/$id"
            params={{ id: w.id }}
            className="rounded-md px-2 py-1.5 text-sm text-stone-600 hover:bg-stone-100 dark:text-stone-300 dark:hover:bg-stone-800"
          >
            Deliveries
          </Link>
          {!confirming && (
            <Button tone="danger" onClick={() => setConfirming(true)}>
              Delete
            </Button>
          )}
        </div>
      </div>
      {confirming && (
        <div
          role="alertdialog"
          aria-label="Delete webhook"
          className="flex flex-wrap items-center gap-2 rounded-md bg-red-50 px-3 py-2 text-sm dark:bg-red-950/40"
        >
          <span className="mr-auto text-red-900 dark:text-red-200">
            Delete this webhook? Its pending deliveries are given up.
          </span>
          <Button onClick={() => setConfirming(false)} disabled={del.isPending}>
            Keep
          </Button>
          <Button tone="danger" onClick={() => del.mutate()} disabled={del.isPending}>
            {del.isPending ? "Deleting…" : "Yes, delete"}
          </Button>
        </div>
      )}
      <ErrorNote error={del.error} />
    </li>
  );
}

/** Tasks' own `webhook` URLs are signed with one organisation secret, which admins may read. */
function OrgSecret() {
  const [shown, setShown] = useState(false);
  const secret = useQuery({ queryKey: ["webhook-secret"], queryFn: api.webhooks.secret, enabled: shown });
  return (
    <Card>
      <SectionTitle aside={<Button onClick={() => setShown((s) => !s)}>{shown ? "Hide" : "Reveal"}</Button>}>
        Task webhook secret
      </SectionTitle>
      <p className="text-xs text-stone-500">
        A task submitted with its own webhook URL is signed with the organisation's secret instead of a
        subscription's. Admins only.
      </p>
      {shown && secret.data && (
        <code className="mt-2 block break-all rounded-md bg-stone-100 px-3 py-2 font-mono text-xs dark:bg-stone-950">
          {secret.data.secret}
        </code>
      )}
      {shown && (
        <div className="mt-2">
          <ErrorNote error={secret.error} />
        </div>
      )}
    </Card>
  );
}

export function WebhooksPage() {
  const list = useQuery({ queryKey: ["webhooks"], queryFn: api.webhooks.list });
  const [created, setCreated] = useState<CreatedWebhook>();
  return (
    <div className="grid grid-cols-[minmax(0,1fr)] gap-6">
      <CreateWebhookForm onCreated={setCreated} />
      {created && <SecretOnce w={created} onDone={() => setCreated(undefined)} />}
      <section aria-labelledby="webhooks-heading">
        <h2 id="webhooks-heading" className="mb-2 font-semibold">
          Webhooks
        </h2>
        <ErrorNote error={list.error} />
        {list.isPending && <p className="text-sm text-stone-500">Loading webhooks…</p>}
        {list.data && list.data.length === 0 && (
          <p className="text-sm text-stone-500">No webhooks yet. Create one above.</p>
        )}
        {list.data && list.data.length > 0 && (
          <ul aria-label="Webhooks" className={listClass}>
            {list.data.map((w) => (
              <WebhookRow key={w.id} w={w} />
            ))}
          </ul>
        )}
      </section>
      <OrgSecret />
    </div>
  );
}

const anyPending = (data: InfiniteData<DeliveryPage> | undefined) =>
  !!data?.pages.some((p) => p.items.some((d) => d.status === "pending"));

export function WebhookPage() {
  const { id } = useParams({ from: "/hooks/$id" });
  const hooks = useQuery({ queryKey: ["webhooks"], queryFn: api.webhooks.list });
  const hook = hooks.data?.find((w) => w.id === id);
  const [status, setStatus] = useState<DeliveryStatus | "">("");
  const filter = status ? { status } : {};
  const log = useInfiniteQuery({
    queryKey: ["webhook-deliveries", id, filter],
    queryFn: ({ pageParam }) => api.webhooks.deliveries(id, { ...filter, limit: 50, cursor: pageParam }),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last) => last.nextCursor ?? undefined,
    // A pending delivery is retried on the server's clock, which the activity feed does not report:
    // while one is on screen, re-read the log now and then so its outcome shows up.
    refetchInterval: (q) => (anyPending(q.state.data) ? 3000 : false),
  });
  const items = log.data?.pages.flatMap((p) => p.items) ?? [];
  return (
    <div className="grid grid-cols-[minmax(0,1fr)] gap-5">
      <div className="grid gap-1">
        <p className="text-xs text-stone-500">
          <Link to="/hooks" className="hover:underline">
            Webhooks
          </Link>{" "}
          / <span className="font-mono">{id}</span>
        </p>
        <h1 className="break-all font-mono text-lg font-semibold">{hook?.url ?? id}</h1>
        {hook && (
          <p className="flex flex-wrap items-center gap-2 text-xs text-stone-500">
            <EventChips events={hook.events} />
            <span>
              {hook.projectId ? <span className="font-mono">{hook.projectId}</span> : "all projects"}
            </span>
            <span>
              created <When iso={hook.createdAt}>{timeAgo(hook.createdAt)}</When>
            </span>
          </p>
        )}
        {hooks.data && !hook && <p className="text-sm text-stone-500">This webhook no longer exists.</p>}
      </div>
      <section aria-label="Delivery log">
        <div className="mb-3 flex flex-wrap items-end gap-3">
          <h2 className="w-full font-semibold sm:mr-auto sm:w-auto sm:self-center">Delivery log</h2>
          <Field id="delivery-status" label="Status" className="flex-1 sm:w-36 sm:flex-none">
            <select
              {...controlProps("delivery-status")}
              value={status}
              onChange={(e) => setStatus(e.target.value as DeliveryStatus | "")}
              className={`${inputClass} py-1.5`}
            >
              <option value="">All</option>
              <option value="pending">pending</option>
              <option value="delivered">delivered</option>
              <option value="failed">failed</option>
            </select>
          </Field>
          <Button onClick={() => log.refetch()} disabled={log.isFetching}>
            Refresh
          </Button>
        </div>
        <ErrorNote error={log.error} />
        {log.isPending && <p className="text-sm text-stone-500">Loading deliveries…</p>}
        {log.data && items.length === 0 && (
          <p className="text-sm text-stone-500">
            {status
              ? `No ${status} deliveries.`
              : "No deliveries yet: they appear here as matching events happen."}
          </p>
        )}
        {items.length > 0 && <DeliveryList items={items} />}
        <LoadMore query={log} />
      </section>
    </div>
  );
}
