-- The overview's reads, each bounded by what it shows rather than by history: today's usage without
-- scanning the event log, today's finished tasks, and recent failures from indexes over failures only.
create index events_usage_at on events (at) where type = 'usage';
create index tasks_finished on tasks (org_id, finished_at) where finished_at is not null;
create index tasks_failed on tasks (org_id, finished_at desc) where state in ('failed', 'dead', 'timed_out');
-- Not on updated_at: every event append changes it, and an index on it would cost each append its
-- HOT update. Status and error change only at turn boundaries.
create index sessions_failing on sessions (org_id)
  where deleted_at is null and (error is not null or status in ('failed', 'interrupted'));
