-- Browser sessions: an httpOnly cookie that stands for an API token until it expires. Only SHA-256
-- hashes of the cookie secret and of its CSRF companion are stored (both have full entropy, so a
-- fast hash is enough); revoking the token ends its browser sessions through the join on tokens.
create table web_sessions (
  hash text primary key,
  csrf_hash text not null,
  token_id text not null references tokens (id) on delete cascade,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null
);
create index web_sessions_expires on web_sessions (expires_at);
