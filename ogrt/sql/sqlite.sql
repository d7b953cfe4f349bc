-- OGRT schema for SQLite (the embedded default output). Idempotent.
-- Times are RFC 3339 UTC text with microseconds ("2026-11-25T12:00:00.000001Z"),
-- which sorts and compares correctly as text. Text columns hold escaped text
-- (see README, "Text that is not UTF-8").
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS executables (
    id        INTEGER PRIMARY KEY,
    path      TEXT NOT NULL,
    signature TEXT NOT NULL DEFAULT '',
    UNIQUE (path, signature)
);

CREATE TABLE IF NOT EXISTS libraries (
    id        INTEGER PRIMARY KEY,
    path      TEXT NOT NULL,
    signature TEXT NOT NULL DEFAULT '',
    UNIQUE (path, signature)
);

CREATE TABLE IF NOT EXISTS modules (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

-- One row per process; the start and the end record fill it (in any order).
CREATE TABLE IF NOT EXISTS processes (
    id            INTEGER PRIMARY KEY,
    uuid          TEXT NOT NULL UNIQUE,
    host          TEXT,
    peer          TEXT,
    job_id        TEXT,
    pid           INTEGER,
    ppid          INTEGER,
    uid           INTEGER,
    gid           INTEGER,
    username      TEXT,          -- resolved on the daemon host, else the client hint
    executable_id INTEGER REFERENCES executables (id),
    args          TEXT,          -- JSON array of escaped text
    cwd           TEXT,
    env           TEXT,          -- JSON object name -> escaped text
    rank          INTEGER,
    start_time    TEXT,
    end_time      TEXT,
    exit_status   INTEGER,
    duration      REAL,          -- seconds
    utime         REAL,          -- seconds
    stime         REAL,          -- seconds
    maxrss_kb     INTEGER,
    minflt        INTEGER,
    majflt        INTEGER,
    inblock       INTEGER,
    oublock       INTEGER,
    nvcsw         INTEGER,
    nivcsw        INTEGER
);

CREATE TABLE IF NOT EXISTS process_libraries (
    process_id INTEGER NOT NULL REFERENCES processes (id),
    library_id INTEGER NOT NULL REFERENCES libraries (id),
    late       INTEGER NOT NULL DEFAULT 0,   -- 1: loaded after start (dlopen)
    PRIMARY KEY (process_id, library_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS process_modules (
    process_id INTEGER NOT NULL REFERENCES processes (id),
    module_id  INTEGER NOT NULL REFERENCES modules (id),
    PRIMARY KEY (process_id, module_id)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS processes_start_time ON processes (start_time);
CREATE INDEX IF NOT EXISTS processes_job_id ON processes (job_id);
CREATE INDEX IF NOT EXISTS processes_executable ON processes (executable_id);
CREATE INDEX IF NOT EXISTS processes_uid ON processes (uid);
CREATE INDEX IF NOT EXISTS processes_host ON processes (host);
CREATE INDEX IF NOT EXISTS process_libraries_library ON process_libraries (library_id);
CREATE INDEX IF NOT EXISTS process_modules_module ON process_modules (module_id);
CREATE INDEX IF NOT EXISTS executables_signature ON executables (signature);
CREATE INDEX IF NOT EXISTS libraries_signature ON libraries (signature);
