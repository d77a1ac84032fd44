-- Failed sign-ins within the throttle's window, counted by every node (voicebot/web/throttle.py).
CREATE TABLE login_failures (
    key TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX login_failures_key_at ON login_failures (key, at);
