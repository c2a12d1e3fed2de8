-- The scheduler's limits as rows, so that claims need no global lock.
--
-- A limit of L running tasks in a scope ('all', 'project:<id>', 'token:<id>') is L slot rows
-- (idx 1..L, made on first need). A claim takes a free slot of each scope its task counts
-- against with FOR UPDATE SKIP LOCKED: two claimers never take the same slot and never wait for
-- each other, and a scope with no free slot at or below its limit has no room. A task holds its
-- slots while it is running; the trigger frees them whenever it leaves `running`, by whatever
-- statement (the scheduler, a reclaim, a cancel, an operator's update).
create table claim_slots (
  scope text not null,
  idx int not null,
  task_id text references tasks(id) on delete set null,
  primary key (scope, idx)
);
create index claim_slots_task on claim_slots (task_id) where task_id is not null;

create function claim_slots_release() returns trigger language plpgsql as $$
begin
  update claim_slots set task_id = null where task_id = old.id;
  return null;
end $$;

create trigger tasks_release_claim_slots after update of state on tasks
  for each row when (old.state = 'running' and new.state <> 'running')
  execute function claim_slots_release();

-- Tasks running when this is applied hold slots like any other.
insert into claim_slots (scope, idx, task_id)
  select 'all', row_number() over (order by id), id from tasks where state = 'running';
insert into claim_slots (scope, idx, task_id)
  select 'project:' || project_id, row_number() over (partition by project_id order by id), id
  from tasks where state = 'running';
insert into claim_slots (scope, idx, task_id)
  select 'token:' || token_id, row_number() over (partition by token_id order by id), id
  from tasks where state = 'running' and token_id is not null;
