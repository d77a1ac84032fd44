-- Recordings' metadata, their screening and QA (recordings/): the sealed audio lies in the folder every node shares.
CREATE TABLE recordings (
    recording_id TEXT PRIMARY KEY,
    file TEXT,
    source TEXT,
    adapter TEXT,
    agent_id TEXT,
    account_id TEXT,
    started_at TEXT,
    month TEXT,
    ended_at TEXT,
    duration_s DOUBLE PRECISION,
    sample_rate BIGINT,
    legs TEXT,
    outcome TEXT,
    flags TEXT,
    flag_count BIGINT,
    status TEXT,
    key_id TEXT,
    retain_until TEXT,
    purged_at TEXT,
    original_name TEXT,
    agent_lines BYTEA,
    owner TEXT
);
CREATE INDEX recordings_month_agent_id ON recordings (month, agent_id);
CREATE INDEX recordings_status_retain_until ON recordings (status, retain_until);
CREATE TABLE screenings (
    recording_id TEXT PRIMARY KEY,
    status TEXT,
    worker TEXT,
    claimed_at TEXT,
    finished_at TEXT,
    error TEXT,
    transcript BYTEA,
    flags TEXT,
    scorecard TEXT,
    score DOUBLE PRECISION,
    attempts BIGINT
);
CREATE TABLE qa_samples (
    sample_id TEXT PRIMARY KEY,
    month TEXT,
    rate DOUBLE PRECISION,
    seed BIGINT,
    created_at TEXT,
    actor TEXT,
    rowid BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE TABLE qa_sample_items (
    sample_id TEXT NOT NULL,
    recording_id TEXT NOT NULL,
    agent_id TEXT,
    reason TEXT,
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (sample_id, recording_id)
);
CREATE TABLE qa_reviews (
    review_id TEXT PRIMARY KEY,
    recording_id TEXT,
    month TEXT,
    agent_id TEXT,
    reviewer TEXT,
    at TEXT,
    marks TEXT,
    verdict TEXT,
    score DOUBLE PRECISION,
    notes BYTEA,
    item_notes BYTEA,
    rowid BIGINT GENERATED ALWAYS AS IDENTITY
);
