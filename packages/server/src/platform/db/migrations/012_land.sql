-- The last time a workspace's branch was merged into (or patched onto) the user's repository.
alter table workspaces add column merged_into text;
alter table workspaces add column merged_commit text;
alter table workspaces add column merged_at timestamptz;
