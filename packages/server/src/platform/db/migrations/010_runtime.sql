-- A shard is run by one runtime for life (its harness, its execs, its terminals), with one network
-- policy: the sandbox binds the shard, so both are fixed when the shard is made. Shards made before
-- runtimes existed hold workspaces outside their directory and ran as plain processes: `local`.
alter table shards
  add column runtime text not null default 'local',
  add column network text not null default 'open' check (network in ('none', 'allowlist', 'open'));
alter table shards alter column runtime drop default;
alter table shards alter column network drop default;
create index shards_runtime on shards (project_id, runtime, network) where retired_at is null;

-- The driver's own handle on a harness (a pid and its start time, a container id), opaque to the rest.
alter table harnesses add column ref jsonb;

-- The runtime a session or task asked for (null: the project's or the configuration's default).
alter table tasks add column runtime text;
