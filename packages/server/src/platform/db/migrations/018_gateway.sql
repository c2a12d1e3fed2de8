-- The model gateway: harnesses call models through the control plane with a gateway token of
-- their own (only its hash is kept), never with a provider key. The token works while its harness
-- is starting or ready, and only for the sessions that harness serves.
alter table harnesses add column gateway_token_hash text;
create unique index harnesses_gateway_token on harnesses (gateway_token_hash) where gateway_token_hash is not null;

-- One row per model call through the gateway: what was asked, what it cost, how long it took.
create table gateway_calls (
  id text primary key,
  session_id text references sessions(id),
  task_id text,
  project_id text,
  harness_id text not null,
  provider text not null,
  model text,
  path text not null,
  status integer not null,
  stream boolean not null,
  input_tokens bigint not null default 0,
  output_tokens bigint not null default 0,
  cached_tokens bigint not null default 0,
  cost_usd double precision not null default 0,
  first_byte_ms integer,
  latency_ms integer not null,
  error text,
  started_at timestamptz not null default now()
);
create index gateway_calls_session on gateway_calls (session_id, started_at);
create index gateway_calls_project on gateway_calls (project_id, started_at);

-- The gateway process each replica runs beside it (it outlives a crash of the control plane, which
-- adopts it again if it was started with the same settings).
create table gateways (
  replica text primary key,
  pid integer not null,
  pid_start text,
  url text not null,
  fingerprint text not null,
  control_secret text not null,
  started_at timestamptz not null default now()
);

-- A task's hard budgets, over all its attempts: checked by the gateway before each model call.
alter table tasks add column max_cost_usd double precision;
alter table tasks add column max_tokens bigint;
create index gateway_calls_task on gateway_calls (task_id) where task_id is not null;
