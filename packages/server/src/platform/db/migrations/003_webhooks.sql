-- Webhook subscriptions: every task / session.status change of an organisation, or of one project.
-- The secret stays recoverable because signing needs it; it is never returned after creation and
-- never logged. Envelope encryption at rest (ARCHITECTURE.md, "Secrets") will wrap this column.
create table webhook_subscriptions (
  id text primary key,
  org_id text not null references orgs(id),
  project_id text references projects(id),
  url text not null,
  events text[] not null,
  secret text not null,
  created_by text references tokens(id),
  created_at timestamptz not null default now(),
  -- Soft delete: the delivery log of a deleted subscription stays readable.
  deleted_at timestamptz
);
create index webhook_subscriptions_org on webhook_subscriptions (org_id) where deleted_at is null;

-- One secret per organisation signs deliveries to tasks' own `webhook` URLs (an implicit
-- subscription per task); made on first use, readable by admins.
create table webhook_secrets (
  org_id text primary key references orgs(id),
  secret text not null,
  created_at timestamptz not null default now()
);

-- The durable outbox. A row is claimed by pushing next_attempt_at forward (a lease) under
-- FOR UPDATE SKIP LOCKED, so two replicas never send one delivery at once.
create table webhook_deliveries (
  id text primary key,
  org_id text not null references orgs(id),
  subscription_id text references webhook_subscriptions(id),
  task_id text references tasks(id),
  url text not null,
  event_type text not null,
  payload jsonb not null,
  -- Set for events every replica hears (session events fan out over NOTIFY): the first insert wins.
  dedupe_key text unique,
  status text not null default 'pending' check (status in ('pending', 'delivered', 'failed')),
  attempts integer not null default 0,
  next_attempt_at timestamptz default now(),
  last_status_code integer,
  last_error text,
  -- One entry per attempt: {n, at, statusCode, error, durationMs}; at most max-attempts long.
  attempt_log jsonb not null default '[]',
  created_at timestamptz not null default now(),
  delivered_at timestamptz
);
create index webhook_deliveries_due on webhook_deliveries (next_attempt_at) where status = 'pending';
create index webhook_deliveries_subscription on webhook_deliveries (subscription_id, id desc)
  where subscription_id is not null;
create index webhook_deliveries_task on webhook_deliveries (task_id, id desc) where task_id is not null;
