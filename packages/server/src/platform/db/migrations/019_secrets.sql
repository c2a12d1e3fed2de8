-- Secrets under envelope encryption (secrets/store.ts): `value` sealed with the row's own data key,
-- `data_key` sealed with the master key `key_id` names. Nothing here opens without the master key.
create table secrets (
  id text primary key,
  org_id text not null references orgs(id),
  project_id text references projects(id),
  name text not null,
  value bytea not null,
  data_key bytea not null,
  key_id text not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  last_used_at timestamptz
);
create unique index secrets_name on secrets (org_id, coalesce(project_id, ''), name);
