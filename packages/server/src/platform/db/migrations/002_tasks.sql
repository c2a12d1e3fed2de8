create table tasks (
  id text primary key,
  org_id text not null references orgs(id),
  project_id text not null references projects(id),
  token_id text not null references tokens(id),
  repo text not null,
  base_ref text not null,
  prompt text not null,
  model text not null,
  agent text,
  permission jsonb not null,
  priority integer not null default 0,
  timeout_ms integer not null,
  max_attempts integer not null,
  labels jsonb not null default '{}',
  idempotency_key text,
  verify_command text,
  webhook_url text,
  state text not null check (state in ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out', 'dead')),
  attempts integer not null default 0,
  session_id text references sessions(id),
  available_at timestamptz not null default now(),
  cancel_requested boolean not null default false,
  result jsonb,
  error jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  finished_at timestamptz
);
create unique index tasks_idempotency on tasks (org_id, idempotency_key) where idempotency_key is not null;
-- The claim query: queued tasks that are due, best priority first.
create index tasks_queue on tasks (priority desc, created_at) where state = 'queued';
create index tasks_running on tasks (project_id) where state = 'running';
create index tasks_list on tasks (org_id, id desc);

create table task_attempts (
  task_id text not null references tasks(id),
  n integer not null,
  replica text not null,
  session_id text references sessions(id),
  lease_expires_at timestamptz not null,
  started_at timestamptz not null default now(),
  finished_at timestamptz,
  outcome text,
  error jsonb,
  primary key (task_id, n)
);
create index task_attempts_live on task_attempts (lease_expires_at) where finished_at is null;

create table task_history (
  task_id text not null references tasks(id),
  seq bigserial,
  at timestamptz not null default now(),
  from_state text,
  to_state text not null,
  reason text,
  primary key (task_id, seq)
);
