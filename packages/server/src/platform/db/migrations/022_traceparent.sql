-- OpenTelemetry trace context (a W3C `traceparent`), null when tracing is off. A task's: the API
-- request that queued it (or retried it), the parent of each attempt's run on whichever replica
-- claims it. A session's: its current (latest) turn's span, where the model gateway, which OpenCode
-- calls without any trace context, finds the trace its calls belong to.
alter table tasks add column traceparent text;
alter table sessions add column traceparent text;
