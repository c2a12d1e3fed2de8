-- The OpenCode message id Flotilla gave the running turn's prompt: a turn has ended only when the
-- harness shows an answer to this message (an idle report alone can predate the prompt).
alter table sessions add column turn_message_id text;
