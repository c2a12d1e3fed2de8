-- The claim step takes each project's best queued task from this index (one short scan per
-- project) instead of sorting the whole queue while it holds the claim lock.
create index tasks_queue_by_project on tasks (project_id, priority desc, created_at, id) where state = 'queued';
