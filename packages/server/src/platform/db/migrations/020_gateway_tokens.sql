-- Which API token a gateway call was made for (the one that submitted the session's task): per-token
-- spend, its daily limit, and usage grouped by token.
alter table gateway_calls add column api_token_id text;
create index gateway_calls_api_token on gateway_calls (api_token_id, started_at) where api_token_id is not null;

-- The gateway finds a call's task by its session on every call: without this, a scan of all tasks.
create index tasks_session on tasks (session_id) where session_id is not null;
