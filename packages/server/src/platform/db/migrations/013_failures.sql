-- Failures become a closed list (packages/contracts/src/failures.ts): every stored failure is
-- {name, message, retriable[, retryAfterMs, detail]} with `name` one of the list's kinds and
-- `retriable` decided where the failure was born. Failures stored before then are rewritten once
-- into that shape. Kinds that already had their name keep it; the API codes and free names that
-- stood in for a kind become that kind; anything else is an AgentError that keeps its old name in
-- `detail`. Each kind's `retriable` is the list's default as of this migration.
create function pg_temp.flotilla_failure(e jsonb) returns jsonb language sql immutable as $$
  select case
    when e is null or jsonb_typeof(e) <> 'object' then e
    else coalesce(
      (select jsonb_build_object('name', m.kind, 'message', coalesce(e->>'message', ''), 'retriable', m.retriable)
              || case when m.kind = 'Refused' then jsonb_build_object('detail', m.old) else '{}'::jsonb end
         from (values
           ('ProviderAuthError', 'ProviderAuthError', false),
           ('APIError', 'APIError', false),
           ('ContextOverflowError', 'ContextOverflowError', false),
           ('MessageOutputLengthError', 'MessageOutputLengthError', false),
           ('ContentFilterError', 'ContentFilterError', false),
           ('StructuredOutputError', 'StructuredOutputError', false),
           ('MessageAbortedError', 'MessageAbortedError', false),
           ('AgentError', 'AgentError', false),
           ('HarnessLost', 'HarnessLost', true),
           ('HarnessUnavailable', 'HarnessUnavailable', true),
           ('HarnessError', 'HarnessError', true),
           ('RepositoryUnavailable', 'RepositoryUnavailable', false),
           ('ControlPlaneRestart', 'ControlPlaneRestart', true),
           ('ControlPlaneShutdown', 'ControlPlaneShutdown', true),
           ('LeaseExpired', 'LeaseExpired', true),
           ('Refused', 'Refused', false),
           ('InternalError', 'InternalError', false),
           ('Timeout', 'Timeout', false),
           ('VerifyFailed', 'VerifyFailed', false),
           ('LandFailed', 'LandFailed', false),
           ('TurnFailed', 'TurnFailed', false),
           -- What older releases wrote instead.
           ('harness_unavailable', 'HarnessUnavailable', true),
           ('runtime_unavailable', 'HarnessUnavailable', true),
           ('harness_error', 'HarnessError', true),
           ('repo_not_found', 'RepositoryUnavailable', false),
           ('repo_not_git', 'RepositoryUnavailable', false),
           ('repo_clone_failed', 'RepositoryUnavailable', false),
           ('internal', 'InternalError', false),
           ('AttemptError', 'InternalError', false),
           ('ProvisioningFailed', 'InternalError', false),
           ('invalid_request', 'Refused', false),
           ('not_found', 'Refused', false),
           ('conflict', 'Refused', false),
           ('forbidden', 'Refused', false),
           ('session_busy', 'Refused', true),
           ('session_not_resumable', 'Refused', false)
         ) as m(old, kind, retriable)
        where m.old = e->>'name'),
      jsonb_build_object('name', 'AgentError', 'message', coalesce(e->>'message', ''), 'retriable', false)
        || case when e->>'name' is not null then jsonb_build_object('detail', e->>'name') else '{}'::jsonb end)
  end
$$;

update sessions set error = pg_temp.flotilla_failure(error) where error is not null;
update tasks set error = pg_temp.flotilla_failure(error) where error is not null;
update task_attempts set error = pg_temp.flotilla_failure(error) where error is not null;
update events set data = pg_temp.flotilla_failure(data) where type = 'error';
update events set data = jsonb_set(data, '{error}', pg_temp.flotilla_failure(data->'error'))
  where type in ('session.status', 'turn.finished') and data ? 'error';

drop function pg_temp.flotilla_failure(jsonb);
