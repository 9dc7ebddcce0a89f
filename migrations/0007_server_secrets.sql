-- Secrets the instances of one deployment share: the token-signing key that the first instance
-- generates when TOKEN_SECRET is not set, so that every instance verifies the others' tokens.
create table server_secrets (
    name text primary key,
    value bytea not null,
    created_at timestamptz not null default now()
);
