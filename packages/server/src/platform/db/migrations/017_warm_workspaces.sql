-- Warm workspaces: checkouts of a hot project's repository made ahead of its next session (cloned,
-- placed on a shard, handed to the agent's user, and their directory set up by the shard's harness),
-- which a new session on the same base commit takes instead of making its own. `warm_at` is set
-- while one waits for a session (it has none) and cleared in the transaction that gives it one.
alter table workspaces add column warm_at timestamptz;
create index workspaces_warm on workspaces (project_id, base_commit) where warm_at is not null and deleted_at is null;
-- Which projects are hot (a session in the last pool.hotMs) is asked every pool tick.
create index sessions_created on sessions (created_at);
