//! The store's schema, as an append-only list of migrations.
//!
//! `PRAGMA user_version` holds how many migrations a store has had. Never edit
//! a migration that has shipped: add a new one.

pub const MIGRATIONS: &[&str] = &[
    // 1: cache, metrics, model statistics, cooldowns, catalogue.
    r#"
    CREATE TABLE cache (
        key               BLOB PRIMARY KEY,   -- sha256 of the canonical request and routing settings
        model             TEXT NOT NULL,      -- the model that answered
        response          TEXT NOT NULL,      -- the upstream body, verbatim
        content           TEXT,               -- the first choice's message content
        cost_usd          REAL,
        prompt_tokens     INTEGER,
        completion_tokens INTEGER,
        score             REAL,
        created_at        INTEGER NOT NULL    -- unix milliseconds
    ) WITHOUT ROWID;

    -- One row per routed input line (cache hits and failures included).
    CREATE TABLE requests (
        id                INTEGER PRIMARY KEY,
        ts                INTEGER NOT NULL,   -- unix milliseconds when the line was answered
        run_id            TEXT NOT NULL,
        line              INTEGER NOT NULL,   -- 1-based input line number in that run
        request_id        TEXT,               -- the echoed id, as JSON
        model             TEXT,               -- the model whose answer was returned
        ok                INTEGER NOT NULL,
        cached            INTEGER NOT NULL,
        latency_ms        REAL NOT NULL,      -- end to end, as in the output line
        cost_usd          REAL,
        prompt_tokens     INTEGER,
        completion_tokens INTEGER,
        priority          TEXT,
        score             REAL,
        attempts          INTEGER NOT NULL,   -- upstream attempts made for the line
        error_type        TEXT
    );
    CREATE INDEX requests_ts ON requests (ts);

    -- One row per upstream attempt, and one per cache hit (cached = 1).
    CREATE TABLE attempts (
        id                INTEGER PRIMARY KEY,
        ts                INTEGER NOT NULL,
        run_id            TEXT NOT NULL,
        line              INTEGER NOT NULL,
        model             TEXT NOT NULL,
        status            INTEGER,            -- HTTP status, NULL when none was received
        ok                INTEGER NOT NULL,
        cached            INTEGER NOT NULL,
        latency_ms        REAL,
        prompt_tokens     INTEGER,
        completion_tokens INTEGER,
        cost_usd          REAL,
        priority          TEXT,
        score             REAL,
        error_type        TEXT
    );
    CREATE INDEX attempts_ts ON attempts (ts);
    CREATE INDEX attempts_model_ts ON attempts (model, ts);

    -- Recency-weighted latency of successful attempts.
    CREATE TABLE model_stats (
        model       TEXT PRIMARY KEY,
        ewma_ms     REAL NOT NULL,
        samples     INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- Models paused by a Retry-After, shared by every process on the store.
    CREATE TABLE cooldowns (
        model     TEXT PRIMARY KEY,
        until_ms  INTEGER NOT NULL,
        reason    TEXT
    ) WITHOUT ROWID;

    -- The last catalogue fetched from each base URL, in compact form.
    CREATE TABLE catalogue (
        base_url    TEXT PRIMARY KEY,
        fetched_at  INTEGER NOT NULL,
        body        TEXT NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 2: the cache as a rowid table with a unique index on the key. Rows of
    // a WITHOUT ROWID table live in key order, so random SHA-256 keys split
    // pages half-empty, and rows as large as a response spill into overflow
    // pages: 2.5 times the space, and more page reads per lookup. Here rows
    // are appended in insert order and only the small index is random.
    r#"
    CREATE TABLE cache_v2 (
        id                INTEGER PRIMARY KEY,
        key               BLOB NOT NULL UNIQUE, -- sha256 of the canonical request and routing settings
        model             TEXT NOT NULL,
        response          TEXT NOT NULL,
        content           TEXT,
        cost_usd          REAL,
        prompt_tokens     INTEGER,
        completion_tokens INTEGER,
        score             REAL,
        created_at        INTEGER NOT NULL
    );
    INSERT INTO cache_v2 (key, model, response, content, cost_usd, prompt_tokens, completion_tokens, score, created_at)
        SELECT key, model, response, content, cost_usd, prompt_tokens, completion_tokens, score, created_at
        FROM cache ORDER BY created_at;
    DROP TABLE cache;
    ALTER TABLE cache_v2 RENAME TO cache;
    "#,
    // 3: model health beyond latency: a recency-weighted error rate over the
    // attempts that say something of the model, and when it was last tried.
    // Latencies of rows before this were all of answers: each was a try.
    r#"
    ALTER TABLE model_stats ADD COLUMN error_rate REAL NOT NULL DEFAULT 0;
    ALTER TABLE model_stats ADD COLUMN tries INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE model_stats ADD COLUMN last_at INTEGER NOT NULL DEFAULT 0;
    UPDATE model_stats SET tries = samples, last_at = updated_at;
    "#,
    // 4: latency against completion length: recency-weighted means, over
    // a model's answers, of their completion tokens x, x², x·ms and ms.
    r#"
    ALTER TABLE model_stats ADD COLUMN fit_x REAL NOT NULL DEFAULT 0;
    ALTER TABLE model_stats ADD COLUMN fit_xx REAL NOT NULL DEFAULT 0;
    ALTER TABLE model_stats ADD COLUMN fit_xy REAL NOT NULL DEFAULT 0;
    ALTER TABLE model_stats ADD COLUMN fit_y REAL NOT NULL DEFAULT 0;
    ALTER TABLE model_stats ADD COLUMN fit_n INTEGER NOT NULL DEFAULT 0;
    "#,
    // 5: a streamed answer's time to its first chunk; when a cached answer
    // was last used, so that a capped cache drops the least recently used.
    r#"
    ALTER TABLE attempts ADD COLUMN ttft_ms REAL;
    ALTER TABLE cache ADD COLUMN used_at INTEGER;
    "#,
    // 6: health per upstream and model. The same model names on two APIs
    // (OpenRouter and a local proxy, or a dead URL and a live one) are two
    // models: what one API taught must not hold back the other. Averages
    // kept so far were learned on the default API in all likelihood, and
    // stay there; pauses last seconds and are dropped. Attempts name their
    // upstream from now on (NULL before).
    r#"
    CREATE TABLE model_stats_v2 (
        upstream    TEXT NOT NULL,      -- the API's identity: its base URL, normalised
        model       TEXT NOT NULL,
        ewma_ms     REAL NOT NULL,
        samples     INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        error_rate  REAL NOT NULL DEFAULT 0,
        tries       INTEGER NOT NULL DEFAULT 0,
        last_at     INTEGER NOT NULL DEFAULT 0,
        fit_x       REAL NOT NULL DEFAULT 0,
        fit_xx      REAL NOT NULL DEFAULT 0,
        fit_xy      REAL NOT NULL DEFAULT 0,
        fit_y       REAL NOT NULL DEFAULT 0,
        fit_n       INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (upstream, model)
    ) WITHOUT ROWID;
    INSERT INTO model_stats_v2 (upstream, model, ewma_ms, samples, updated_at, error_rate, tries,
                                last_at, fit_x, fit_xx, fit_xy, fit_y, fit_n)
        SELECT 'https://openrouter.ai/api/v1', model, ewma_ms, samples, updated_at, error_rate, tries,
               last_at, fit_x, fit_xx, fit_xy, fit_y, fit_n
        FROM model_stats;
    DROP TABLE model_stats;
    ALTER TABLE model_stats_v2 RENAME TO model_stats;

    DROP TABLE cooldowns;
    CREATE TABLE cooldowns (
        upstream  TEXT NOT NULL,
        model     TEXT NOT NULL,
        until_ms  INTEGER NOT NULL,
        reason    TEXT,
        PRIMARY KEY (upstream, model)
    ) WITHOUT ROWID;

    ALTER TABLE attempts ADD COLUMN upstream TEXT;
    "#,
    // 7: leases on answering a request, so that identical requests in
    // flight in several processes on this store make one upstream call.
    // The holder deletes its row once its answer (or failure) is recorded;
    // the row of a process that died is taken over when it expires.
    r#"
    CREATE TABLE flights (
        key       BLOB PRIMARY KEY,   -- the request's cache key
        owner     TEXT NOT NULL,      -- the process answering it: pid@pid-namespace:random
        until_ms  INTEGER NOT NULL    -- unix milliseconds when the lease ends
    ) WITHOUT ROWID;
    "#,
    // 8: client keys (their tokens only as SHA-256), and the key each
    // request came with.
    r#"
    CREATE TABLE keys (
        name          TEXT PRIMARY KEY,
        token_sha256  TEXT NOT NULL,      -- hex; the token itself is never kept
        policy        TEXT NOT NULL,      -- JSON: budget, rates, models, ...
        created_at    INTEGER NOT NULL,   -- unix milliseconds
        revoked_at    INTEGER
    ) WITHOUT ROWID;

    -- What each key spent each UTC day: kept past --retention, so that a
    -- key's budget for its whole life outlasts the rows of requests.
    CREATE TABLE key_days (
        name      TEXT NOT NULL,
        day       INTEGER NOT NULL,   -- days since 1970-01-01, UTC
        cost_usd  REAL NOT NULL,
        PRIMARY KEY (name, day)
    ) WITHOUT ROWID;

    ALTER TABLE requests ADD COLUMN key_name TEXT;
    CREATE INDEX requests_key ON requests (key_name, ts) WHERE key_name IS NOT NULL;
    "#,
    // 9: quality learned from outcomes: each request's id (unique across
    // runs and machines) and task; the feedback given on requests; and the
    // posterior per upstream, task and model.
    r#"
    ALTER TABLE requests ADD COLUMN rid TEXT;
    ALTER TABLE requests ADD COLUMN task TEXT;
    CREATE INDEX requests_rid ON requests (rid) WHERE rid IS NOT NULL;

    CREATE TABLE feedback (
        rid       TEXT PRIMARY KEY,   -- the request's id
        upstream  TEXT NOT NULL,
        task      TEXT NOT NULL,
        model     TEXT NOT NULL,      -- the model whose answer it judges
        score     REAL NOT NULL,      -- 0..1
        weight    REAL NOT NULL,
        at        INTEGER NOT NULL,   -- unix ms
        key_name  TEXT
    ) WITHOUT ROWID;

    CREATE TABLE quality (
        upstream  TEXT NOT NULL,
        task      TEXT NOT NULL,
        model     TEXT NOT NULL,
        good      REAL NOT NULL,      -- decayed weight of good outcomes, as of `at`
        bad       REAL NOT NULL,
        events    INTEGER NOT NULL,   -- feedback events taken in
        at        INTEGER NOT NULL,   -- unix ms
        PRIMARY KEY (upstream, task, model)
    ) WITHOUT ROWID;
    "#,
    // 10: feedback is its key's own: one per key and request id, so that a
    // client reusing another's id neither replaces nor learns of its
    // feedback; it names the request it judged (a later request may reuse
    // the id). Each request keeps the upstream that answered it, which its
    // feedback teaches.
    r#"
    ALTER TABLE requests ADD COLUMN upstream TEXT;

    CREATE TABLE feedback_v2 (
        key_name  TEXT NOT NULL,      -- the request's key; '' for none
        rid       TEXT NOT NULL,      -- the request's id
        request   INTEGER,            -- requests.id of the request judged
        upstream  TEXT NOT NULL,
        task      TEXT NOT NULL,
        model     TEXT NOT NULL,      -- the model whose answer it judges
        score     REAL NOT NULL,      -- 0..1
        weight    REAL NOT NULL,
        at        INTEGER NOT NULL,   -- unix ms
        PRIMARY KEY (key_name, rid)
    ) WITHOUT ROWID;
    INSERT OR REPLACE INTO feedback_v2 (key_name, rid, request, upstream, task, model, score, weight, at)
        SELECT coalesce(key_name, ''), rid, NULL, upstream, task, model, score, weight, at FROM feedback;
    DROP TABLE feedback;
    ALTER TABLE feedback_v2 RENAME TO feedback;
    "#,
    // 11: what a request was charged, where its cost is not known (sent,
    // and cut off or not priced): the estimate its budgets kept.
    r#"
    ALTER TABLE requests ADD COLUMN charged_usd REAL;
    "#,
    // 12: the store's own id, drawn once: its part of a budget shared
    // through Redis is kept under it.
    r#"
    CREATE TABLE meta (
        name   TEXT PRIMARY KEY,
        value  TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO meta (name, value) VALUES ('store_id', lower(hex(randomblob(12))));
    "#,
    // 13: requests by key are read only by `report --by key`, over a window
    // `requests_ts` finds: an index that every keyed request paid to keep
    // is dropped.
    r#"
    DROP INDEX IF EXISTS requests_key;
    "#,
];
