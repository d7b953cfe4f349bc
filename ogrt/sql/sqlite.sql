-- OGRT schema for SQLite (the embedded default output). Idempotent.
-- Times are RFC 3339 UTC text with microseconds ("2026-11-25T12:00:00.000001Z"),
-- which sorts and compares correctly as text. Text columns hold escaped text
-- (see README, "Text that is not UTF-8").
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);

-- Bumped by `ogrt purge` in each transaction that deletes shared rows (sets, executables,
-- libraries, modules): a writer that sees it change drops the ids it cached
-- (ogrt/sql/retention.py). Also created in a database of this version made before it.
CREATE TABLE IF NOT EXISTS purge_epoch (epoch INTEGER NOT NULL);

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
-- Its libraries and modules are sets (libsets, modsets below), shared by processes.
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
    step_id       TEXT,          -- SLURM_STEP_ID of the task
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
    nivcsw        INTEGER,
    verified      INTEGER,         -- 1: pid/uid/gid checked by a node relay (NULL: stored before 4)
    libset_id      INTEGER REFERENCES libsets (id),  -- libraries at start
    late_libset_id INTEGER REFERENCES libsets (id),  -- libraries loaded after start (end record)
    modset_id      INTEGER REFERENCES modsets (id)   -- modules loaded at start
);

-- One row per batch job, from the job_start and job_end records of the scheduler's hooks
-- (`ogrt job-event`), in either order: each column keeps the last value that was not NULL.
-- NULL: the scheduler did not tell. Processes point to it by processes.job_id.
CREATE TABLE IF NOT EXISTS jobs (
    job_id        TEXT PRIMARY KEY,
    array_job_id  TEXT,
    array_task_id INTEGER,
    username      TEXT,
    uid           INTEGER,
    account       TEXT,
    partition     TEXT,
    name          TEXT,
    nodelist      TEXT,          -- as Slurm compresses it: node[1-2]
    num_nodes     INTEGER,
    num_tasks     INTEGER,
    num_cpus      INTEGER,
    submit_time   TEXT,
    start_time    TEXT,
    end_time      TEXT,
    work_dir      TEXT,
    state         TEXT,          -- COMPLETED, FAILED, CANCELLED, TIMEOUT, NODE_FAIL, ...
    exit_code     INTEGER,
    exit_signal   INTEGER,
    cluster       TEXT,
    started_event TEXT,          -- when the job_start record was sent
    ended_event   TEXT           -- when the job_end record was sent
);

-- Library sets and module sets, content-addressed: the processes of one program load
-- the same libraries over and over, so a process row points to a set (written once)
-- instead of owning one link row per library. digest = blake2b-16 of the sorted member
-- ids (ogrt/outputs/sqlrecords.py, set_digest).
CREATE TABLE IF NOT EXISTS libsets (
    id     INTEGER PRIMARY KEY,
    digest BLOB NOT NULL UNIQUE
);

CREATE TABLE IF NOT EXISTS libset_members (
    libset_id  INTEGER NOT NULL REFERENCES libsets (id),
    library_id INTEGER NOT NULL REFERENCES libraries (id),
    PRIMARY KEY (libset_id, library_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS modsets (
    id     INTEGER PRIMARY KEY,
    digest BLOB NOT NULL UNIQUE
);

CREATE TABLE IF NOT EXISTS modset_members (
    modset_id INTEGER NOT NULL REFERENCES modsets (id),
    module_id INTEGER NOT NULL REFERENCES modules (id),
    PRIMARY KEY (modset_id, module_id)
) WITHOUT ROWID;

-- The per-process views of the sets, with the columns of the former link tables.
-- late = 1: loaded after start (dlopen; from the end record). A library of the late set
-- that is also in the start set is not late (the end record may arrive, alone, before
-- its start record) and is listed once, as not late.
CREATE VIEW IF NOT EXISTS process_libraries (process_id, library_id, late) AS
    SELECT p.id, m.library_id, 0
    FROM processes p JOIN libset_members m ON m.libset_id = p.libset_id
    UNION ALL
    SELECT p.id, m.library_id, 1
    FROM processes p JOIN libset_members m ON m.libset_id = p.late_libset_id
    WHERE p.late_libset_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM libset_members s WHERE s.libset_id = p.libset_id AND s.library_id = m.library_id);

CREATE VIEW IF NOT EXISTS process_modules (process_id, module_id) AS
    SELECT p.id, m.module_id
    FROM processes p JOIN modset_members m ON m.modset_id = p.modset_id;

CREATE INDEX IF NOT EXISTS processes_start_time ON processes (start_time);
CREATE INDEX IF NOT EXISTS processes_job_id ON processes (job_id);
CREATE INDEX IF NOT EXISTS processes_executable ON processes (executable_id);
CREATE INDEX IF NOT EXISTS processes_uid ON processes (uid);
CREATE INDEX IF NOT EXISTS processes_host ON processes (host);
CREATE INDEX IF NOT EXISTS executables_signature ON executables (signature);
CREATE INDEX IF NOT EXISTS libraries_signature ON libraries (signature);
CREATE INDEX IF NOT EXISTS processes_libset ON processes (libset_id);
CREATE INDEX IF NOT EXISTS processes_late_libset ON processes (late_libset_id) WHERE late_libset_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS processes_modset ON processes (modset_id);
CREATE INDEX IF NOT EXISTS libset_members_library ON libset_members (library_id);
CREATE INDEX IF NOT EXISTS modset_members_module ON modset_members (module_id);
CREATE INDEX IF NOT EXISTS jobs_start_time ON jobs (start_time);

-- Software census (schema 4; `ogrt census update`): where installed software comes from.
-- A package of a source (spack, lmod, python, dpkg), its paths (exact files or directory
-- prefixes), and the attribution of recorded executables, libraries and library sets to
-- packages (once per distinct path, kept up to date by `ogrt census update`).
CREATE TABLE IF NOT EXISTS census_packages (
    id      INTEGER PRIMARY KEY,
    source  TEXT NOT NULL,       -- spack | lmod | python | dpkg
    ident   TEXT NOT NULL,       -- unique in its source: spack hash, module file, dist-info dir, package:arch
    name    TEXT NOT NULL,
    version TEXT NOT NULL DEFAULT '',
    hash    TEXT NOT NULL DEFAULT '',
    details TEXT,                -- JSON: compiler, variants, arch, module file, ...
    prefix  TEXT,                -- install prefix, site-packages, module file
    origin  TEXT NOT NULL,       -- the tree indexed: spack root, MODULEPATH, python prefix, dpkg dir
    digest  TEXT NOT NULL,       -- changes when the entry does (incremental updates)
    UNIQUE (source, ident)
);

CREATE TABLE IF NOT EXISTS census_paths (
    path       TEXT NOT NULL,
    package_id INTEGER NOT NULL REFERENCES census_packages (id),
    exact      INTEGER NOT NULL, -- 1: this file; 0: every path under this directory
    PRIMARY KEY (path, package_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS census_executables (
    executable_id INTEGER NOT NULL,
    package_id    INTEGER NOT NULL,
    PRIMARY KEY (executable_id, package_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS census_libraries (
    library_id INTEGER NOT NULL,
    package_id INTEGER NOT NULL,
    PRIMARY KEY (library_id, package_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS census_libsets (
    libset_id  INTEGER NOT NULL,
    package_id INTEGER NOT NULL,
    PRIMARY KEY (libset_id, package_id)
) WITHOUT ROWID;

-- how far attribution got: the highest executable, library and libset id attributed, and
-- the purge epoch it saw (a purge may reuse ids: everything is attributed again)
CREATE TABLE IF NOT EXISTS census_state (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

-- The census's use of each package, rolled up by `ogrt census update` from the processes
-- with id <= census_state 'usage' (settled rows: complete, or older than two days):
-- per package and user (processes, first and last start; uid -1: none), per package and
-- job, per package and host. The software report without filters reads these and adds
-- the processes after the watermark: a few rows per package and job, not one per process.
CREATE TABLE IF NOT EXISTS census_usage_users (
    package_id INTEGER NOT NULL,
    uid        INTEGER NOT NULL,
    processes  INTEGER NOT NULL,
    first_use  TEXT,
    last_use   TEXT,
    PRIMARY KEY (package_id, uid)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS census_usage_jobs (
    package_id INTEGER NOT NULL,
    job_id     TEXT NOT NULL,
    PRIMARY KEY (package_id, job_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS census_usage_hosts (
    package_id INTEGER NOT NULL,
    host       TEXT NOT NULL,
    PRIMARY KEY (package_id, host)
) WITHOUT ROWID;

-- Schema 5: the same per package and UTC day, user, host and job (census_usage_days, for the
-- software report with filters) is created from ogrt/sql/aggregates.py (CENSUS_DAYS).

CREATE INDEX IF NOT EXISTS census_paths_package ON census_paths (package_id);
CREATE INDEX IF NOT EXISTS census_executables_package ON census_executables (package_id);
CREATE INDEX IF NOT EXISTS census_libraries_package ON census_libraries (package_id);
CREATE INDEX IF NOT EXISTS census_libsets_package ON census_libsets (package_id);
