-- turn.finished says what the turn leaves the session in (`status`), so that a client ends a turn
-- on that one event. Turns finished before then get it from their outcome, as they were written:
-- an interrupted turn left the session interrupted, any other left it idle.
update events
   set data = data || jsonb_build_object('status', case when data->>'outcome' = 'interrupted' then 'interrupted' else 'idle' end)
 where type = 'turn.finished' and not data ? 'status';
