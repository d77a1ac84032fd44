-- Console users and their sessions, shared by every node (voicebot/web/auth.py makes the same on SQLite).
CREATE TABLE users (
    username TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    language TEXT NOT NULL DEFAULT '',
    zone TEXT NOT NULL DEFAULT ''
);
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users (username),
    csrf TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    last_seen_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX sessions_username ON sessions (username);
