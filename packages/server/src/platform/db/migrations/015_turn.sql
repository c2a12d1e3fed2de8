-- A session's turn lives in one column, written only by the turn machine (sessions/turn.ts) in the
-- same transaction as the events that tell of it. It replaces the prompt waiting for a harness
-- (pending_prompt), the running turn's prompt id and start (turn_message_id, turn_started_at), and
-- the control plane's in-memory abort flags, which a restart lost.
alter table sessions add column turn jsonb;

update sessions s
   set turn = jsonb_build_object(
     'phase', 'running',
     'messageId', coalesce(s.turn_message_id, ''),
     'startedAt', floor(extract(epoch from coalesce(s.turn_started_at, s.updated_at)) * 1000),
     'abortRequested', false,
     'waiting', coalesce((select jsonb_agg(p.id order by p.asked_at) from permission_requests p
                           where p.session_id = s.id and p.status = 'pending'), '[]'::jsonb))
 where s.status in ('running', 'waiting_permission');

update sessions
   set turn = jsonb_build_object('phase', 'pending', 'prompt', pending_prompt)
 where pending_prompt is not null and turn is null;

alter table sessions drop column pending_prompt;
alter table sessions drop column turn_message_id;
alter table sessions drop column turn_started_at;
