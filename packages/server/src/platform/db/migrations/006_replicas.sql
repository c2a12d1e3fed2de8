-- Which control-plane replica owns a shard (its files are on that replica's disk) and its harness
-- (a process on that replica's machine). Null: made before replicas were told apart, owned by any.
alter table shards add column replica text;
alter table harnesses add column replica text;
create index shards_replica on shards (replica, project_id) where retired_at is null;
