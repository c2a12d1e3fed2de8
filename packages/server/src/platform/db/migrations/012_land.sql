-- The last time a workspace's branch was merged into (or patched onto) the user's repository.
alter table workspaces add column merged_into text;
alter table workspaces add column merged_commit text;
alter table workspaces add column merged_at timestamptz;
-- The last push of a workspace's branch to a remote.
alter table workspaces add column pushed_to text;
alter table workspaces add column pushed_commit text;
alter table workspaces add column pushed_at timestamptz;

-- The pull request of a workspace's branch, as last read from its forge.
create table pull_requests (
  workspace_id text primary key references workspaces(id),
  session_id text not null references sessions(id),
  forge text not null,
  repo text not null,
  number integer not null,
  url text not null,
  info jsonb not null,
  updated_at timestamptz not null default now()
);

-- What a task lands on success: {commit: true, pr: {draft, base?, title?} | null}; null: nothing.
alter table tasks add column land jsonb;
