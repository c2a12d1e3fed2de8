-- A task's budgets either refuse the call that would cross them (hard, as before) or let it through
-- and say so (warn): a `budget.warning` event and webhook, once per budget.
alter table tasks add column budget_mode text not null default 'hard' check (budget_mode in ('hard', 'warn'));

-- The budgets a call crossed in warn mode (it went through): what says a warning was given already.
alter table gateway_calls add column budget_warnings text[];
create index gateway_calls_warnings on gateway_calls (task_id, started_at) where budget_warnings is not null;
