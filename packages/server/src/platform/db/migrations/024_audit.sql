-- The audit log (src/audit/audit.ts): append-only and hash-chained per org. Each row's hash is a
-- SHA-256 over its own fields and the previous row's hash; `seq` is gap-free per org. The chain
-- head (one row per org) holds the last seq and hash: appends lock it (so the chain's order is the
-- order of the commits, whatever the concurrency) and `verify` reads it to catch a cut-off tail.
create table audit_heads (
  org_id text primary key references orgs (id),
  last_seq bigint not null default 0,
  last_hash text not null
);

create table audit_events (
  org_id text not null references orgs (id),
  seq bigint not null,
  at timestamptz not null,
  actor text not null,
  actor_label text,
  action text not null,
  target_type text,
  target_id text,
  outcome text not null check (outcome in ('ok', 'denied', 'failed')),
  request_id text,
  ip text,
  detail jsonb not null default '{}',
  prev_hash text not null,
  hash text not null,
  primary key (org_id, seq)
);
create index audit_events_action on audit_events (org_id, action, seq);
create index audit_events_actor on audit_events (org_id, actor, seq);
create index audit_events_target on audit_events (org_id, target_id, seq);

-- Append-only for everyone who goes through the table normally. A superuser can still switch the
-- trigger off; the hash chain is what catches that (`flotilla audit verify`).
create function audit_events_append_only() returns trigger language plpgsql as $$
begin
  raise exception 'audit_events is append-only (% refused)', tg_op;
end $$;
create trigger audit_events_append_only before update or delete on audit_events
  for each row execute function audit_events_append_only();
create trigger audit_events_no_truncate before truncate on audit_events
  for each statement execute function audit_events_append_only();
