-- A fork's OpenCode session starts with copies of its parent's messages, whose history the fork's
-- log already holds (copied from the parent's log): OpenCode message ids up to this one are those
-- copies, and reading the harness back skips them.
alter table sessions add column history_floor text;
