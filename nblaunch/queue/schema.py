"""The store's schema, one migration per version; applied in order on open."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: jobs, attempts, events, metrics, agents
    """
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        queue TEXT NOT NULL,
        state TEXT NOT NULL,
        priority INTEGER NOT NULL,
        gpus INTEGER NOT NULL,
        job_dir TEXT NOT NULL,
        sweep_id TEXT,
        max_retries INTEGER NOT NULL,
        retry_backoff_s REAL NOT NULL,
        max_preemptions INTEGER NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        retries INTEGER NOT NULL DEFAULT 0,
        preemptions INTEGER NOT NULL DEFAULT 0,
        not_before REAL NOT NULL DEFAULT 0,
        submitted_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        cancel_requested_at REAL,
        error TEXT,
        updated_at REAL NOT NULL
    );
    CREATE INDEX jobs_pick ON jobs(queue, state, priority DESC, seq);
    CREATE INDEX jobs_sweep ON jobs(sweep_id);
    CREATE TABLE attempts (
        job_id TEXT NOT NULL REFERENCES jobs(id),
        n INTEGER NOT NULL,
        state TEXT NOT NULL,
        run_dir TEXT NOT NULL,
        gpu_ids TEXT NOT NULL DEFAULT '',
        handle TEXT,
        agent_pid INTEGER,
        started_at REAL NOT NULL,
        running_at REAL,
        finished_at REAL,
        exit_code INTEGER,
        outcome TEXT,
        error TEXT,
        PRIMARY KEY (job_id, n)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        time REAL NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX events_job ON events(job_id, id);
    CREATE TABLE metrics (
        job_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        step INTEGER,
        name TEXT NOT NULL,
        value REAL NOT NULL,
        time REAL NOT NULL
    );
    CREATE INDEX metrics_job ON metrics(job_id, name, step);
    CREATE TABLE agents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        queues TEXT NOT NULL,
        started_at REAL NOT NULL,
        heartbeat_at REAL NOT NULL,
        stopped_at REAL
    );
    """,
    # 2: metrics ingestion survives an agent restart; preemption drills
    """
    ALTER TABLE attempts ADD COLUMN metrics_offset INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN preempt_requested_at REAL;
    """,
    # 3: progress and rate queries seek instead of scanning a long history
    """
    CREATE INDEX metrics_job_attempt ON metrics(job_id, attempt);
    CREATE INDEX metrics_job_step ON metrics(job_id, step);
    """,
    # 4: retry policies by failure class, time limits, agent-initiated stops
    """
    ALTER TABLE jobs ADD COLUMN retry_policy TEXT NOT NULL DEFAULT '{}';
    UPDATE jobs SET retry_policy = json_object(
        'max_retries', max_retries, 'initial_s', retry_backoff_s,
        'max_preemptions', max_preemptions,
        'retry_on', json_array('preempted', 'lost', 'failed'));
    ALTER TABLE jobs DROP COLUMN max_retries;
    ALTER TABLE jobs DROP COLUMN retry_backoff_s;
    ALTER TABLE jobs DROP COLUMN max_preemptions;
    ALTER TABLE jobs ADD COLUMN lost_retries INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN timeout_s REAL;
    ALTER TABLE attempts ADD COLUMN stop_reason TEXT;
    ALTER TABLE attempts ADD COLUMN stop_requested_at REAL;
    CREATE INDEX jobs_state ON jobs(state);
    """,
    # 5: engines that hold a job before starting it (Slurm) say why it waits
    """
    ALTER TABLE attempts ADD COLUMN pending_reason TEXT;
    """,
]

VERSION = len(MIGRATIONS)
