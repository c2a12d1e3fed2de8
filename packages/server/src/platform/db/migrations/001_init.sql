create table orgs (
  id text primary key,
  name text not null unique,
  created_at timestamptz not null default now()
);

create table projects (
  id text primary key,
  org_id text not null references orgs(id),
  repo text not null,
  created_at timestamptz not null default now(),
  unique (org_id, repo)
);

create table tokens (
  id text primary key,
  org_id text not null references orgs(id),
  name text not null,
  role text not null check (role in ('admin', 'member')),
  hash text not null unique,
  prefix text not null,
  created_at timestamptz not null default now(),
  last_used_at timestamptz,
  revoked_at timestamptz
);

create table workspaces (
  id text primary key,
  org_id text not null references orgs(id),
  project_id text not null references projects(id),
  kind text not null check (kind in ('worktree', 'clone')),
  repo text not null,
  path text not null,
  state_dir text not null,
  base_ref text not null,
  base_commit text not null,
  branch text,
  created_at timestamptz not null default now(),
  deleted_at timestamptz
);

create table harnesses (
  id text primary key,
  workspace_id text not null references workspaces(id),
  driver text not null,
  state text not null check (state in ('starting', 'ready', 'stopping', 'stopped', 'lost')),
  pid integer,
  pid_start text,
  url text,
  run_dir text not null,
  started_at timestamptz not null default now(),
  ready_at timestamptz,
  stopped_at timestamptz,
  reason text
);
-- At most one live harness serves a workspace's state shard (OpenCode's SQLite must not be shared).
create unique index harnesses_one_live on harnesses (workspace_id) where state in ('starting', 'ready', 'stopping');

create table sessions (
  id text primary key,
  org_id text not null references orgs(id),
  project_id text not null references projects(id),
  workspace_id text not null references workspaces(id),
  parent_id text references sessions(id),
  title text not null,
  status text not null,
  model text not null,
  agent text,
  permission jsonb not null,
  opencode_id text,
  last_seq bigint not null default 0,
  error jsonb,
  turn_started_at timestamptz,
  tokens jsonb not null default '{"input":0,"output":0,"reasoning":0,"cacheRead":0,"cacheWrite":0}',
  cost double precision not null default 0,
  pending_prompt text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz
);
create index sessions_list on sessions (org_id, id desc) where deleted_at is null;
create index sessions_opencode on sessions (opencode_id);

create table events (
  session_id text not null references sessions(id),
  seq bigint not null,
  id text not null,
  type text not null,
  data jsonb not null,
  at timestamptz not null default now(),
  primary key (session_id, seq)
);

-- What the event log already says about each harness part/message: lets a reconcile after a dropped
-- stream emit exactly what is missing, no more.
create table session_parts (
  session_id text not null references sessions(id),
  part_id text not null,
  kind text not null,
  status text,
  text_len integer not null default 0,
  primary key (session_id, part_id)
);

create table permission_requests (
  id text primary key,
  session_id text not null references sessions(id),
  permission text not null,
  patterns jsonb not null,
  metadata jsonb not null,
  status text not null check (status in ('pending', 'replied', 'gone')),
  reply text,
  message text,
  asked_at timestamptz not null default now(),
  replied_at timestamptz
);
create index permission_pending on permission_requests (session_id) where status = 'pending';
