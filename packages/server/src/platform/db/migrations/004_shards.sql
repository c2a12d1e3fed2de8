-- A shard is one set of OpenCode data/config/state/cache dirs. Workspaces are bound to a shard for
-- life; at most one live harness serves a shard, and it serves every workspace of the shard.
create table shards (
  id text primary key,
  org_id text references orgs(id),
  -- null: a warm shard (with a ready harness) not yet given to a project
  project_id text references projects(id),
  dir text not null,
  created_at timestamptz not null default now(),
  retired_at timestamptz
);
create index shards_project on shards (project_id) where retired_at is null;

alter table workspaces add column shard_id text references shards(id);
-- Workspaces made before shards keep their own state dir as a shard of their own.
insert into shards (id, org_id, project_id, dir, created_at)
  select 'shd_' || substr(id, 5), org_id, project_id, state_dir, created_at from workspaces;
update workspaces set shard_id = 'shd_' || substr(id, 5);
alter table workspaces alter column shard_id set not null;

alter table harnesses add column shard_id text references shards(id);
update harnesses h set shard_id = w.shard_id from workspaces w where w.id = h.workspace_id;
alter table harnesses alter column shard_id set not null;
alter table harnesses alter column workspace_id drop not null;
drop index harnesses_one_live;
create unique index harnesses_one_live on harnesses (shard_id) where state in ('starting', 'ready', 'stopping');
alter table harnesses
  add column rss_bytes bigint,
  add column sessions_served integer not null default 0,
  add column active_sessions integer not null default 0,
  add column last_active_at timestamptz not null default now();
