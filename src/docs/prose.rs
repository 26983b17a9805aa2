//! The man page's prose: exit statuses, environment, files and examples,
//! written out here as clap does not know them.

/// Exit statuses and their meaning.
pub(super) const EXIT_STATUS: &[(&str, &str)] = &[
    (
        "0",
        "Every line was answered, also when the output is closed early, as by | head.",
    ),
    (
        "1",
        "At least one line has an error (a line the API answers with HTTP 402 gets payment_required).",
    ),
    (
        "2",
        "Usage, configuration or fatal error: a bad flag, an unreadable file, a missing API key \
         for a live run, an unusable store, or a key the API refuses (HTTP 401).",
    ),
    ("130", "Interrupted by Ctrl-C (SIGINT)."),
    ("143", "Terminated by SIGTERM."),
];

/// Environment variables and what they do.
pub(super) const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "LLMROUTE_API_KEY",
        "The API key, sent as a bearer token and nowhere else. Needed for a live run, not for --dry-run. \
         Wins over OPENROUTER_API_KEY when both are set.",
    ),
    (
        "OPENROUTER_API_KEY",
        "The API key when LLMROUTE_API_KEY is not set.",
    ),
    (
        "LLMROUTE_BASE_URL",
        "The OpenAI-compatible API to call, as --base-url (default https://openrouter.ai/api/v1).",
    ),
    ("LLMROUTE_DB", "The SQLite store, as --db."),
    (
        "LLMROUTE_CONFIG",
        "The config file to read instead of $XDG_CONFIG_HOME/llmroute/config.toml.",
    ),
    (
        "LLMROUTE_PRIORITY",
        "What to favour (speed, cost, quality, balanced), as --priority.",
    ),
    (
        "LLMROUTE_MODELS",
        "The candidate models, comma-separated, as --models.",
    ),
    (
        "LLMROUTE_FALLBACK",
        "Models to try after the ranked candidates, comma-separated, as --fallback.",
    ),
    (
        "LLMROUTE_CONCURRENCY",
        "Requests in flight at once, as --concurrency.",
    ),
    (
        "LLMROUTE_TIMEOUT",
        "Time limit of one upstream attempt, as --timeout.",
    ),
    (
        "LLMROUTE_CACHE_TTL",
        "How long a cached answer is reused, as --cache-ttl.",
    ),
    (
        "LLMROUTE_RETENTION",
        "How long metrics are kept in the store, as --retention.",
    ),
    (
        "LLMROUTE_LISTEN",
        "The address llmroute serve listens on, as --listen.",
    ),
    (
        "LLMROUTE_AUTH_TOKENS",
        "Client tokens of llmroute serve, comma-separated: a request must send one as \
         Authorization: Bearer TOKEN. Without any (and without keys made by llmroute keys), the server listens on loopback only.",
    ),
    (
        "LLMROUTE_ADMIN_TOKENS",
        "Admin tokens of llmroute serve, comma-separated, for DELETE /cache.",
    ),
    (
        "LLMROUTE_REDIS_URL",
        "Redis (or Valkey) to share answers and model health through, as --redis: \
         redis://[user:password@]host[:port][/db], or rediss:// for TLS. The password is never shown.",
    ),
    (
        "LLMROUTE_REDIS_PREFIX",
        "The prefix of llmroute's keys in Redis, as --redis-prefix.",
    ),
    (
        "LLMROUTE_BUDGET_ID",
        "The name of the budget shared with --shared-limits, as --budget-id.",
    ),
    (
        "SSL_CERT_FILE, SSL_CERT_DIR",
        "Certificates to trust instead of the system's store; the bundled roots are trusted too.",
    ),
    (
        "XDG_DATA_HOME",
        "The directory of the default store (~/.local/share when unset).",
    ),
    (
        "XDG_CONFIG_HOME",
        "The directory of the default config file (~/.config when unset).",
    ),
    (
        "NO_COLOR",
        "When set and not empty, output has no colour or terminal escapes, as with --color never; \
         --color always wins over it.",
    ),
];

/// Files llmroute reads and writes.
pub(super) const FILES_SECTION: &[(&str, &str)] = &[
    (
        "$XDG_DATA_HOME/llmroute/llmroute.db",
        "The store: response cache, metrics, measured latencies, cooldowns and the model \
         catalogue (SQLite; --db or LLMROUTE_DB choose another).",
    ),
    (
        "$XDG_CONFIG_HOME/llmroute/config.toml",
        "The config file: defaults for the routing flags (LLMROUTE_CONFIG chooses another).",
    ),
];

/// Shell examples: what each does, and the command lines.
pub(super) const EXAMPLES: &[(&str, &[&str])] = &[
    (
        "What would be chosen, and why (no calls, no key):",
        &["llmroute --dry-run < requests.jsonl | jq -c '{id, model, score}'"],
    ),
    (
        "Only the answers, favouring cost:",
        &["llmroute -p cost questions.jsonl | jq -r .content"],
    ),
    (
        "Answers next to your ids, as TSV:",
        &["llmroute batch.jsonl | jq -r '[.id, .model, .content] | @tsv'"],
    ),
    (
        "Lines that failed, with why:",
        &["llmroute batch.jsonl | jq -c 'select(.error) | {line, id, error}'"],
    ),
    (
        "An OpenAI-compatible server on loopback, then a client of it:",
        &[
            "llmroute serve -p balanced &",
            "curl -s localhost:8080/v1/chat/completions \\",
            "  --json '{\"model\": \"llmroute/speed\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}'",
        ],
    ),
    (
        "The last day as one HTML page with charts, mailed by cron (the server's live one is at /dashboard):",
        &["llmroute report --format html -o /var/www/llmroute/today.html"],
    ),
    (
        "Your own candidates and fallback, explicit weights, and the spend of the run:",
        &[
            "llmroute --models openai/gpt-5.4-mini,google/gemini-3.5-flash \\",
            "         --fallback openai/gpt-5.4 \\",
            "         --weights latency=0.5,cost=0.2,quality=0.3 batch.jsonl |",
            "  jq -s 'map(.cost_usd // 0) | add'",
        ],
    ),
];
