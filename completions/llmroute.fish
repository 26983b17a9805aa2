# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_llmroute_global_optspecs
    string join \n P/prompt= json p/priority= w/weights= m/models= f/fallback= quality= j/concurrency= timeout= max-attempts= cache-ttl= rpm= tpm= max-cost= explore= hedge= max-latency= max-line-cost= retention= redis= redis-prefix= redis-timeout= shared-limits budget-id= n/dry-run e/explain unordered no-cache q/quiet v/verbose progress= route-all task= grade= grade-timeout= output-format= db= config= base-url= color= h/help V/version
end

function __fish_llmroute_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_llmroute_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_llmroute_using_subcommand
    set -l cmd (__fish_llmroute_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c llmroute -n "__fish_llmroute_needs_command" -s P -l prompt -d 'Route this one prompt instead of reading input, and print the answer\'s text' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -s p -l priority -d 'What to favour: speed, cost, quality or balanced [default: balanced]' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -s w -l weights -d 'Explicit weights, e.g. latency=0.5,cost=0.2,quality=0.3 (normalised to sum 1); overrides --priority' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -s m -l models -d 'Candidate models, comma-separated [default: a built-in list across price tiers]' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -s f -l fallback -d 'Models to try, in order, after the ranked candidates have failed' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -l quality -d 'Quality priors in [0, 1] that override the built-in ones, e.g. openai/gpt-5.4-mini=0.8' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -s j -l concurrency -d 'Requests in flight at once [default: 8]' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -l timeout -d 'Time limit of one upstream attempt, at least 100ms, e.g. 30s, 2m [default: 60s]' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -l max-attempts -d 'Upstream attempts per line, across models [default: 4]' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -l cache-ttl -d 'How long a cached answer is reused, e.g. 12h, 7d [default: 7d]' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -l rpm -d 'Requests per minute at most, shared by all requests in flight' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -l tpm -d 'Tokens per minute at most (estimated before a call; usage after charges the extra and gives back the unused)' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -l max-cost -d 'Spend at most this many USD in this run: a line whose estimate does not fit what is left gets a budget_exceeded error, and later lines that fit are still sent' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -l explore -d 'Share of requests that re-measure a candidate tried longest ago, in [0, 1]; 0 turns exploration off [default: 0.05]' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -l hedge -d 'Send a slow request to the next-best model too: after its model\'s p95 latency kept within 1.5 to 3 times its median (auto), after DURATION, or never (off) [default: off]' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -l max-latency -d 'Leave out candidates whose latency estimate for a line is over this, e.g. 2s' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -l max-line-cost -d 'Leave out candidates whose cost estimate for a line is over this many USD' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -l retention -d 'Metrics older than this, at least 1m, are pruned from the store after a run (and by a server as it runs) [default: 90d]' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -l redis -d 'Share answers and model health with other machines through Redis or Valkey, e.g. redis://host:6379/0 (rediss:// for TLS)' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -l redis-prefix -d 'The prefix of llmroute\'s keys in Redis [default: llmroute:v1:]' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -l redis-timeout -d 'Time limit of one Redis call; past it, local state answers [default: 50ms]' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -l budget-id -d 'The name of the budget --max-cost shares with --shared-limits, e.g. a date [default: default]' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -l progress -d 'Progress bar on stderr: auto (only on a terminal), always, never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmroute -n "__fish_llmroute_needs_command" -l task -d 'The task of every line that names none (`llmroute.task`): outcomes teach each model\'s quality per task' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -l grade -d 'Grade each answer with this command (`sh -c CMD`): it reads the request and answer as JSON on stdin and prints a score (0..1, true or false), which teaches the router as the run goes' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -l grade-timeout -d 'How long the grader may take for one answer, at least 100ms, before it (and whatever it started) is killed and the line goes out without a grade' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -l output-format -d 'The output lines\' shape: llmroute (with its annotations) or openai-batch (OpenAI\'s batch output: id, custom_id, response, error)' -r -f -a "llmroute\t'llmroute\'s own: the answer with the model, score, latency, cost and attempts'
openai-batch\t'OpenAI\'s batch output file: `id`, `custom_id`, `response: {status_code, request_id, body}`, `error`'"
complete -c llmroute -n "__fish_llmroute_needs_command" -l db -d 'The SQLite store (cache and metrics) [default: $XDG_DATA_HOME/llmroute/llmroute.db]' -r -F
complete -c llmroute -n "__fish_llmroute_needs_command" -l config -d 'The config file [default: $XDG_CONFIG_HOME/llmroute/config.toml]' -r -F
complete -c llmroute -n "__fish_llmroute_needs_command" -l base-url -d 'The OpenAI-compatible API to call [default: https://openrouter.ai/api/v1]' -r
complete -c llmroute -n "__fish_llmroute_needs_command" -l color -d 'Colour and terminal escapes: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmroute -n "__fish_llmroute_needs_command" -l json -d 'With --prompt: print the JSON output line instead of the answer\'s text'
complete -c llmroute -n "__fish_llmroute_needs_command" -l shared-limits -d 'Share --rpm, --tpm and --max-cost with every process on the same Redis'
complete -c llmroute -n "__fish_llmroute_needs_command" -s n -l dry-run -d 'Choose models but call none (needs no API key; works offline); implies --explain'
complete -c llmroute -n "__fish_llmroute_needs_command" -s e -l explain -d 'Add the full ranking (`candidates`) to every output line'
complete -c llmroute -n "__fish_llmroute_needs_command" -l unordered -d 'Write output lines as they complete instead of in input order'
complete -c llmroute -n "__fish_llmroute_needs_command" -l no-cache -d 'Neither read nor write the response cache (attempts are still recorded)'
complete -c llmroute -n "__fish_llmroute_needs_command" -s q -l quiet -d 'Print nothing on stderr but errors'
complete -c llmroute -n "__fish_llmroute_needs_command" -s v -l verbose -d 'Log every upstream attempt and cache hit on stderr'
complete -c llmroute -n "__fish_llmroute_needs_command" -l route-all -d 'Route every line, taking a line\'s `model` (as every OpenAI Batch line has) as a hint that routing may override, not a pin'
complete -c llmroute -n "__fish_llmroute_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c llmroute -n "__fish_llmroute_needs_command" -s V -l version -d 'Print version'
complete -c llmroute -n "__fish_llmroute_needs_command" -a "report" -d 'Latency percentiles, per-model usage, errors, cost and cache hit rate from the store'
complete -c llmroute -n "__fish_llmroute_needs_command" -a "models" -d 'The candidate models with prices, quality, measured latency and the score each would get now'
complete -c llmroute -n "__fish_llmroute_needs_command" -a "cache" -d 'Inspect and trim the response cache'
complete -c llmroute -n "__fish_llmroute_needs_command" -a "keys" -d 'Client keys for `serve`: each with its token, and optionally a budget, rates, models and more'
complete -c llmroute -n "__fish_llmroute_needs_command" -a "feedback" -d 'Take in feedback on answers (JSONL {"request_id", "score"}), or outcomes of an evaluation: the router learns each model\'s quality per task'
complete -c llmroute -n "__fish_llmroute_needs_command" -a "config" -d 'Where the config, store and catalogue live, and the effective configuration'
complete -c llmroute -n "__fish_llmroute_needs_command" -a "serve" -d 'Serve the router as an OpenAI-compatible HTTP API (POST /v1/chat/completions)'
complete -c llmroute -n "__fish_llmroute_needs_command" -a "completions" -d 'Print the completion script for a shell, e.g. `llmroute completions bash > ~/.local/share/bash-completion/completions/llmroute`'
complete -c llmroute -n "__fish_llmroute_needs_command" -a "man" -d 'Print the man page (roff), e.g. `llmroute man | man -l -`'
complete -c llmroute -n "__fish_llmroute_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c llmroute -n "__fish_llmroute_using_subcommand report" -l since -d 'The window to report on: a duration back from now (1h, 7d) or `all`' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand report" -l model -d 'Only these models (repeatable)' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand report" -l by -d 'The rows of the table: one per model, one per client key of `serve`, one per task and model with its feedback and learned quality, or one per upstream (JSON, Prometheus and HTML have them all)' -r -f -a "model\t''
key\t''
task\t''
upstream\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand report" -l format -d 'Output format [default: table]' -r -f -a "table\t'For people: totals and a row per model'
json\t'For scripts'
prometheus\t'Prometheus text exposition, for node_exporter\'s textfile collector'
html\t'One self-contained HTML page with charts, to open offline or mail'"
complete -c llmroute -n "__fish_llmroute_using_subcommand report" -s o -l output -d 'Write the report to FILE (replaced whole, never half-written) instead of standard output' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand report" -l db -d 'The SQLite store (cache and metrics) [default: $XDG_DATA_HOME/llmroute/llmroute.db]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand report" -l config -d 'The config file [default: $XDG_CONFIG_HOME/llmroute/config.toml]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand report" -l base-url -d 'The OpenAI-compatible API to call [default: https://openrouter.ai/api/v1]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand report" -l color -d 'Colour and terminal escapes: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand report" -l json -d 'Same as --format json'
complete -c llmroute -n "__fish_llmroute_using_subcommand report" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c llmroute -n "__fish_llmroute_using_subcommand models" -s p -l priority -d 'What to favour: speed, cost, quality or balanced [default: balanced]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand models" -s w -l weights -d 'Explicit weights, e.g. latency=0.5,cost=0.2,quality=0.3 (normalised to sum 1); overrides --priority' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand models" -s m -l models -d 'Candidate models, comma-separated [default: a built-in list across price tiers]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand models" -s f -l fallback -d 'Models to try, in order, after the ranked candidates have failed' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand models" -l quality -d 'Quality priors in [0, 1] that override the built-in ones, e.g. openai/gpt-5.4-mini=0.8' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand models" -l task -d 'Quality and scores for this task: learned from its feedback where there was any, else pooled from other tasks and models, else the prior' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand models" -l reset -d 'Forget the health learned of these models (all when none is named) on this --base-url: latency and error averages, pauses, open circuits' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand models" -l redis -d 'The Redis whose shared quality a listing reads, and, with --reset, whose shared health is forgotten too (or the config\'s `redis`)' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand models" -l redis-prefix -d 'The prefix of llmroute\'s keys in that Redis, as the servers on it have it [default: llmroute:v1:]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand models" -l db -d 'The SQLite store (cache and metrics) [default: $XDG_DATA_HOME/llmroute/llmroute.db]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand models" -l config -d 'The config file [default: $XDG_CONFIG_HOME/llmroute/config.toml]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand models" -l base-url -d 'The OpenAI-compatible API to call [default: https://openrouter.ai/api/v1]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand models" -l color -d 'Colour and terminal escapes: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand models" -l all -d 'Every model in the catalogue, not only the candidates'
complete -c llmroute -n "__fish_llmroute_using_subcommand models" -l json -d 'JSON for scripts'
complete -c llmroute -n "__fish_llmroute_using_subcommand models" -l refresh -d 'Fetch the catalogue again now'
complete -c llmroute -n "__fish_llmroute_using_subcommand models" -s h -l help -d 'Print help'
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and not __fish_seen_subcommand_from stats clear prune help" -l db -d 'The SQLite store (cache and metrics) [default: $XDG_DATA_HOME/llmroute/llmroute.db]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and not __fish_seen_subcommand_from stats clear prune help" -l config -d 'The config file [default: $XDG_CONFIG_HOME/llmroute/config.toml]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and not __fish_seen_subcommand_from stats clear prune help" -l base-url -d 'The OpenAI-compatible API to call [default: https://openrouter.ai/api/v1]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and not __fish_seen_subcommand_from stats clear prune help" -l color -d 'Colour and terminal escapes: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and not __fish_seen_subcommand_from stats clear prune help" -s h -l help -d 'Print help'
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and not __fish_seen_subcommand_from stats clear prune help" -f -a "stats" -d 'Entries, size, oldest and newest entry, and the hit rate over a window'
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and not __fish_seen_subcommand_from stats clear prune help" -f -a "clear" -d 'Remove every cached answer'
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and not __fish_seen_subcommand_from stats clear prune help" -f -a "prune" -d 'Remove cached answers older than a duration'
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and not __fish_seen_subcommand_from stats clear prune help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from stats" -l since -d 'The window of the hit rate: a duration back from now (1h, 7d) or `all`' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from stats" -l db -d 'The SQLite store (cache and metrics) [default: $XDG_DATA_HOME/llmroute/llmroute.db]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from stats" -l config -d 'The config file [default: $XDG_CONFIG_HOME/llmroute/config.toml]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from stats" -l base-url -d 'The OpenAI-compatible API to call [default: https://openrouter.ai/api/v1]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from stats" -l color -d 'Colour and terminal escapes: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from stats" -l json -d 'JSON for scripts'
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from stats" -s h -l help -d 'Print help'
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from clear" -l db -d 'The SQLite store (cache and metrics) [default: $XDG_DATA_HOME/llmroute/llmroute.db]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from clear" -l config -d 'The config file [default: $XDG_CONFIG_HOME/llmroute/config.toml]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from clear" -l base-url -d 'The OpenAI-compatible API to call [default: https://openrouter.ai/api/v1]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from clear" -l color -d 'Colour and terminal escapes: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from clear" -s h -l help -d 'Print help'
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from prune" -l older-than -d 'e.g. 30d' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from prune" -l db -d 'The SQLite store (cache and metrics) [default: $XDG_DATA_HOME/llmroute/llmroute.db]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from prune" -l config -d 'The config file [default: $XDG_CONFIG_HOME/llmroute/config.toml]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from prune" -l base-url -d 'The OpenAI-compatible API to call [default: https://openrouter.ai/api/v1]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from prune" -l color -d 'Colour and terminal escapes: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from prune" -s h -l help -d 'Print help'
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from help" -f -a "stats" -d 'Entries, size, oldest and newest entry, and the hit rate over a window'
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from help" -f -a "clear" -d 'Remove every cached answer'
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from help" -f -a "prune" -d 'Remove cached answers older than a duration'
complete -c llmroute -n "__fish_llmroute_using_subcommand cache; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and not __fish_seen_subcommand_from create list show revoke help" -l redis -d 'Keep and read keys in this Redis too, so every server on it knows them (or the config\'s `redis`)' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and not __fish_seen_subcommand_from create list show revoke help" -l redis-prefix -d 'The prefix of llmroute\'s keys in that Redis, as the servers on it have it [default: llmroute:v1:]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and not __fish_seen_subcommand_from create list show revoke help" -l db -d 'The SQLite store (cache and metrics) [default: $XDG_DATA_HOME/llmroute/llmroute.db]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and not __fish_seen_subcommand_from create list show revoke help" -l config -d 'The config file [default: $XDG_CONFIG_HOME/llmroute/config.toml]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and not __fish_seen_subcommand_from create list show revoke help" -l base-url -d 'The OpenAI-compatible API to call [default: https://openrouter.ai/api/v1]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and not __fish_seen_subcommand_from create list show revoke help" -l color -d 'Colour and terminal escapes: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and not __fish_seen_subcommand_from create list show revoke help" -s h -l help -d 'Print help'
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and not __fish_seen_subcommand_from create list show revoke help" -f -a "create" -d 'Make a key and print its token, once: only its SHA-256 is kept'
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and not __fish_seen_subcommand_from create list show revoke help" -f -a "list" -d 'Every key, with its limits, and whether it is live, revoked or expired'
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and not __fish_seen_subcommand_from create list show revoke help" -f -a "show" -d 'One key\'s policy and what it spent this period'
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and not __fish_seen_subcommand_from create list show revoke help" -f -a "revoke" -d 'Revoke a key: a running server refuses its token within seconds'
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and not __fish_seen_subcommand_from create list show revoke help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from create" -l budget -d 'What the key may spend a period, in USD' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from create" -l per -d 'The budget\'s period (UTC calendar days or months, or the key\'s whole life) [default: total]' -r -f -a "day\t''
month\t''
total\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from create" -l rpm -d 'Requests a minute' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from create" -l tpm -d 'Tokens a minute (prompt and completion, as the upstream counts them)' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from create" -l models -d 'Models the key may use, as patterns with `*` (e.g. \'openai/*\'); routing stays within them' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from create" -l priorities -d 'Priorities the key may ask for; the first is its default when the server\'s is not one' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from create" -l max-tokens -d 'The most max_tokens a request may ask for (a request that asks none gets this)' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from create" -l cache -d 'Whose cache the key\'s requests use: its own, or the one keys share [default: own]' -r -f -a "own\t''
shared\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from create" -l feedback -d 'Whether the key\'s feedback (POST /v1/feedback) teaches the router every key is routed by [default: on]' -r -f -a "on\t''
off\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from create" -l expires -d 'When the key stops working: a duration from now (30d) or a UTC date or time (2027-01-31, 2027-01-31T12:00:00Z)' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from create" -l redis -d 'Keep and read keys in this Redis too, so every server on it knows them (or the config\'s `redis`)' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from create" -l redis-prefix -d 'The prefix of llmroute\'s keys in that Redis, as the servers on it have it [default: llmroute:v1:]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from create" -l db -d 'The SQLite store (cache and metrics) [default: $XDG_DATA_HOME/llmroute/llmroute.db]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from create" -l config -d 'The config file [default: $XDG_CONFIG_HOME/llmroute/config.toml]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from create" -l base-url -d 'The OpenAI-compatible API to call [default: https://openrouter.ai/api/v1]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from create" -l color -d 'Colour and terminal escapes: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from create" -l json -d 'JSON for scripts (the token included)'
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from list" -l redis -d 'Keep and read keys in this Redis too, so every server on it knows them (or the config\'s `redis`)' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from list" -l redis-prefix -d 'The prefix of llmroute\'s keys in that Redis, as the servers on it have it [default: llmroute:v1:]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from list" -l db -d 'The SQLite store (cache and metrics) [default: $XDG_DATA_HOME/llmroute/llmroute.db]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from list" -l config -d 'The config file [default: $XDG_CONFIG_HOME/llmroute/config.toml]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from list" -l base-url -d 'The OpenAI-compatible API to call [default: https://openrouter.ai/api/v1]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from list" -l color -d 'Colour and terminal escapes: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from list" -l json -d 'JSON for scripts'
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from show" -l redis -d 'Keep and read keys in this Redis too, so every server on it knows them (or the config\'s `redis`)' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from show" -l redis-prefix -d 'The prefix of llmroute\'s keys in that Redis, as the servers on it have it [default: llmroute:v1:]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from show" -l db -d 'The SQLite store (cache and metrics) [default: $XDG_DATA_HOME/llmroute/llmroute.db]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from show" -l config -d 'The config file [default: $XDG_CONFIG_HOME/llmroute/config.toml]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from show" -l base-url -d 'The OpenAI-compatible API to call [default: https://openrouter.ai/api/v1]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from show" -l color -d 'Colour and terminal escapes: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from show" -l json -d 'JSON for scripts'
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from revoke" -l redis -d 'Keep and read keys in this Redis too, so every server on it knows them (or the config\'s `redis`)' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from revoke" -l redis-prefix -d 'The prefix of llmroute\'s keys in that Redis, as the servers on it have it [default: llmroute:v1:]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from revoke" -l db -d 'The SQLite store (cache and metrics) [default: $XDG_DATA_HOME/llmroute/llmroute.db]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from revoke" -l config -d 'The config file [default: $XDG_CONFIG_HOME/llmroute/config.toml]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from revoke" -l base-url -d 'The OpenAI-compatible API to call [default: https://openrouter.ai/api/v1]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from revoke" -l color -d 'Colour and terminal escapes: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help'
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from help" -f -a "create" -d 'Make a key and print its token, once: only its SHA-256 is kept'
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from help" -f -a "list" -d 'Every key, with its limits, and whether it is live, revoked or expired'
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from help" -f -a "show" -d 'One key\'s policy and what it spent this period'
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from help" -f -a "revoke" -d 'Revoke a key: a running server refuses its token within seconds'
complete -c llmroute -n "__fish_llmroute_using_subcommand keys; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c llmroute -n "__fish_llmroute_using_subcommand feedback" -l outcomes -d 'Read outcomes of an evaluation instead: JSONL {"task": T, "model": M, "score": 0..1 | true | false, "weight": W}' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand feedback" -l redis -d 'Share what it teaches through this Redis too, with every process on it, and judge the requests other machines on it answered (or the config\'s `redis`)' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand feedback" -l redis-prefix -d 'The prefix of llmroute\'s keys in that Redis, as the servers on it have it [default: llmroute:v1:]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand feedback" -l db -d 'The SQLite store (cache and metrics) [default: $XDG_DATA_HOME/llmroute/llmroute.db]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand feedback" -l config -d 'The config file [default: $XDG_CONFIG_HOME/llmroute/config.toml]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand feedback" -l base-url -d 'The OpenAI-compatible API to call [default: https://openrouter.ai/api/v1]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand feedback" -l color -d 'Colour and terminal escapes: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand feedback" -s q -l quiet -d 'Print nothing for the lines taken in, only the errors, and no summary'
complete -c llmroute -n "__fish_llmroute_using_subcommand feedback" -s h -l help -d 'Print help'
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and not __fish_seen_subcommand_from path show help" -l db -d 'The SQLite store (cache and metrics) [default: $XDG_DATA_HOME/llmroute/llmroute.db]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and not __fish_seen_subcommand_from path show help" -l config -d 'The config file [default: $XDG_CONFIG_HOME/llmroute/config.toml]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and not __fish_seen_subcommand_from path show help" -l base-url -d 'The OpenAI-compatible API to call [default: https://openrouter.ai/api/v1]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and not __fish_seen_subcommand_from path show help" -l color -d 'Colour and terminal escapes: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and not __fish_seen_subcommand_from path show help" -s h -l help -d 'Print help'
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and not __fish_seen_subcommand_from path show help" -f -a "path" -d 'Print where the config file, the store and the catalogue live'
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and not __fish_seen_subcommand_from path show help" -f -a "show" -d 'Print the effective configuration (flags, environment, file, defaults) as TOML'
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and not __fish_seen_subcommand_from path show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from path" -l db -d 'The SQLite store (cache and metrics) [default: $XDG_DATA_HOME/llmroute/llmroute.db]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from path" -l config -d 'The config file [default: $XDG_CONFIG_HOME/llmroute/config.toml]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from path" -l base-url -d 'The OpenAI-compatible API to call [default: https://openrouter.ai/api/v1]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from path" -l color -d 'Colour and terminal escapes: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from path" -s h -l help -d 'Print help'
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -s p -l priority -d 'What to favour: speed, cost, quality or balanced [default: balanced]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -s w -l weights -d 'Explicit weights, e.g. latency=0.5,cost=0.2,quality=0.3 (normalised to sum 1); overrides --priority' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -s m -l models -d 'Candidate models, comma-separated [default: a built-in list across price tiers]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -s f -l fallback -d 'Models to try, in order, after the ranked candidates have failed' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -l quality -d 'Quality priors in [0, 1] that override the built-in ones, e.g. openai/gpt-5.4-mini=0.8' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -s j -l concurrency -d 'Requests in flight at once [default: 8]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -l timeout -d 'Time limit of one upstream attempt, at least 100ms, e.g. 30s, 2m [default: 60s]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -l max-attempts -d 'Upstream attempts per line, across models [default: 4]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -l cache-ttl -d 'How long a cached answer is reused, e.g. 12h, 7d [default: 7d]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -l rpm -d 'Requests per minute at most, shared by all requests in flight' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -l tpm -d 'Tokens per minute at most (estimated before a call; usage after charges the extra and gives back the unused)' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -l max-cost -d 'Spend at most this many USD in this run: a line whose estimate does not fit what is left gets a budget_exceeded error, and later lines that fit are still sent' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -l explore -d 'Share of requests that re-measure a candidate tried longest ago, in [0, 1]; 0 turns exploration off [default: 0.05]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -l hedge -d 'Send a slow request to the next-best model too: after its model\'s p95 latency kept within 1.5 to 3 times its median (auto), after DURATION, or never (off) [default: off]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -l max-latency -d 'Leave out candidates whose latency estimate for a line is over this, e.g. 2s' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -l max-line-cost -d 'Leave out candidates whose cost estimate for a line is over this many USD' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -l retention -d 'Metrics older than this, at least 1m, are pruned from the store after a run (and by a server as it runs) [default: 90d]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -l redis -d 'Share answers and model health with other machines through Redis or Valkey, e.g. redis://host:6379/0 (rediss:// for TLS)' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -l redis-prefix -d 'The prefix of llmroute\'s keys in Redis [default: llmroute:v1:]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -l redis-timeout -d 'Time limit of one Redis call; past it, local state answers [default: 50ms]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -l budget-id -d 'The name of the budget --max-cost shares with --shared-limits, e.g. a date [default: default]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -l db -d 'The SQLite store (cache and metrics) [default: $XDG_DATA_HOME/llmroute/llmroute.db]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -l config -d 'The config file [default: $XDG_CONFIG_HOME/llmroute/config.toml]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -l base-url -d 'The OpenAI-compatible API to call [default: https://openrouter.ai/api/v1]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -l color -d 'Colour and terminal escapes: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -l shared-limits -d 'Share --rpm, --tpm and --max-cost with every process on the same Redis'
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "path" -d 'Print where the config file, the store and the catalogue live'
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "show" -d 'Print the effective configuration (flags, environment, file, defaults) as TOML'
complete -c llmroute -n "__fish_llmroute_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -s p -l priority -d 'What to favour: speed, cost, quality or balanced [default: balanced]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -s w -l weights -d 'Explicit weights, e.g. latency=0.5,cost=0.2,quality=0.3 (normalised to sum 1); overrides --priority' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -s m -l models -d 'Candidate models, comma-separated [default: a built-in list across price tiers]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -s f -l fallback -d 'Models to try, in order, after the ranked candidates have failed' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l quality -d 'Quality priors in [0, 1] that override the built-in ones, e.g. openai/gpt-5.4-mini=0.8' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l timeout -d 'Time limit of one upstream attempt, at least 100ms, e.g. 30s, 2m [default: 60s]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l max-attempts -d 'Upstream attempts per line, across models [default: 4]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l cache-ttl -d 'How long a cached answer is reused, e.g. 12h, 7d [default: 7d]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l rpm -d 'Requests per minute at most, shared by all requests in flight' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l tpm -d 'Tokens per minute at most (estimated before a call; usage after charges the extra and gives back the unused)' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l max-cost -d 'Spend at most this many USD in this run: a line whose estimate does not fit what is left gets a budget_exceeded error, and later lines that fit are still sent' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l explore -d 'Share of requests that re-measure a candidate tried longest ago, in [0, 1]; 0 turns exploration off [default: 0.05]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l hedge -d 'Send a slow request to the next-best model too: after its model\'s p95 latency kept within 1.5 to 3 times its median (auto), after DURATION, or never (off) [default: off]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l max-latency -d 'Leave out candidates whose latency estimate for a line is over this, e.g. 2s' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l max-line-cost -d 'Leave out candidates whose cost estimate for a line is over this many USD' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l retention -d 'Metrics older than this, at least 1m, are pruned from the store after a run (and by a server as it runs) [default: 90d]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l redis -d 'Share answers and model health with other machines through Redis or Valkey, e.g. redis://host:6379/0 (rediss:// for TLS)' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l redis-prefix -d 'The prefix of llmroute\'s keys in Redis [default: llmroute:v1:]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l redis-timeout -d 'Time limit of one Redis call; past it, local state answers [default: 50ms]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l budget-id -d 'The name of the budget --max-cost shares with --shared-limits, e.g. a date [default: default]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l listen -d 'The address to listen on, IP:PORT [default: 127.0.0.1:8080]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l auth-token-file -d 'Client tokens, one per line (# comments); adds to LLMROUTE_AUTH_TOKENS' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l admin-token-file -d 'Admin tokens (for DELETE /cache), one per line; adds to LLMROUTE_ADMIN_TOKENS' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l queue -d 'Requests that may wait for a free upstream slot (-j) before the server answers 503 [default: 4096]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l max-connections -d 'Client connections open at once; past it, new ones wait in the listen backlog [default: 8192]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l max-body -d 'The largest request body, at least 1KiB, e.g. 16MiB [default: 16MiB]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l deadline -d 'Time limit of a whole request from its arrival, queue and fallbacks included, at least 100ms; then 504 [default: 5m]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l grace -d 'How long requests in flight may finish after SIGTERM or Ctrl-C [default: 30s]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l header-timeout -d 'Time a client has to send a request\'s headers (a new connection its first byte), and an idle connection stays open [default: 30s]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l cache-max-size -d 'Cap of the response cache; past it the least recently used answers go, e.g. 2GiB [default: no cap]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l upkeep-every -d 'How often the store drops expired answers, old metrics, and answers past --cache-max-size [default: 10m]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l log-format -d 'Access log lines as text or JSON [default: text]' -r -f -a "text\t''
json\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l cors-origin -d 'Let a web app at this origin (scheme://host[:port]) call the API from a browser: preflights are answered and cross-site POSTs from it accepted; repeatable' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -s j -l concurrency -d 'Upstream requests in flight at once; more wait in the --queue [default: 256]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l db -d 'The SQLite store (cache and metrics) [default: $XDG_DATA_HOME/llmroute/llmroute.db]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l config -d 'The config file [default: $XDG_CONFIG_HOME/llmroute/config.toml]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l base-url -d 'The OpenAI-compatible API to call [default: https://openrouter.ai/api/v1]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l color -d 'Colour and terminal escapes: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l shared-limits -d 'Share --rpm, --tpm and --max-cost with every process on the same Redis'
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l no-cache -d 'Neither read nor write the response cache'
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l log-bodies -d 'Put request and response bodies in the access log (they hold prompts)'
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l no-dashboard -d 'No dashboard at / and /dashboard (they answer 404)'
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l shared-cache -d 'One cache for every client token, instead of one per token'
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l allow-any-model -d 'Let requests pin or list models that are neither in the catalogue nor among the configured candidates'
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -l cache-sampled -d 'Answer sampled requests (temperature above 0 without a seed, or n above 1) from the cache too'
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -s q -l quiet -d 'No access log; only warnings and errors'
complete -c llmroute -n "__fish_llmroute_using_subcommand serve" -s h -l help -d 'Print help'
complete -c llmroute -n "__fish_llmroute_using_subcommand completions" -l db -d 'The SQLite store (cache and metrics) [default: $XDG_DATA_HOME/llmroute/llmroute.db]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand completions" -l config -d 'The config file [default: $XDG_CONFIG_HOME/llmroute/config.toml]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand completions" -l base-url -d 'The OpenAI-compatible API to call [default: https://openrouter.ai/api/v1]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand completions" -l color -d 'Colour and terminal escapes: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand completions" -s h -l help -d 'Print help'
complete -c llmroute -n "__fish_llmroute_using_subcommand man" -l db -d 'The SQLite store (cache and metrics) [default: $XDG_DATA_HOME/llmroute/llmroute.db]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand man" -l config -d 'The config file [default: $XDG_CONFIG_HOME/llmroute/config.toml]' -r -F
complete -c llmroute -n "__fish_llmroute_using_subcommand man" -l base-url -d 'The OpenAI-compatible API to call [default: https://openrouter.ai/api/v1]' -r
complete -c llmroute -n "__fish_llmroute_using_subcommand man" -l color -d 'Colour and terminal escapes: auto (on a terminal, unless NO_COLOR is set), always, never' -r -f -a "auto\t''
always\t''
never\t''"
complete -c llmroute -n "__fish_llmroute_using_subcommand man" -s h -l help -d 'Print help'
complete -c llmroute -n "__fish_llmroute_using_subcommand help; and not __fish_seen_subcommand_from report models cache keys feedback config serve completions man help" -f -a "report" -d 'Latency percentiles, per-model usage, errors, cost and cache hit rate from the store'
complete -c llmroute -n "__fish_llmroute_using_subcommand help; and not __fish_seen_subcommand_from report models cache keys feedback config serve completions man help" -f -a "models" -d 'The candidate models with prices, quality, measured latency and the score each would get now'
complete -c llmroute -n "__fish_llmroute_using_subcommand help; and not __fish_seen_subcommand_from report models cache keys feedback config serve completions man help" -f -a "cache" -d 'Inspect and trim the response cache'
complete -c llmroute -n "__fish_llmroute_using_subcommand help; and not __fish_seen_subcommand_from report models cache keys feedback config serve completions man help" -f -a "keys" -d 'Client keys for `serve`: each with its token, and optionally a budget, rates, models and more'
complete -c llmroute -n "__fish_llmroute_using_subcommand help; and not __fish_seen_subcommand_from report models cache keys feedback config serve completions man help" -f -a "feedback" -d 'Take in feedback on answers (JSONL {"request_id", "score"}), or outcomes of an evaluation: the router learns each model\'s quality per task'
complete -c llmroute -n "__fish_llmroute_using_subcommand help; and not __fish_seen_subcommand_from report models cache keys feedback config serve completions man help" -f -a "config" -d 'Where the config, store and catalogue live, and the effective configuration'
complete -c llmroute -n "__fish_llmroute_using_subcommand help; and not __fish_seen_subcommand_from report models cache keys feedback config serve completions man help" -f -a "serve" -d 'Serve the router as an OpenAI-compatible HTTP API (POST /v1/chat/completions)'
complete -c llmroute -n "__fish_llmroute_using_subcommand help; and not __fish_seen_subcommand_from report models cache keys feedback config serve completions man help" -f -a "completions" -d 'Print the completion script for a shell, e.g. `llmroute completions bash > ~/.local/share/bash-completion/completions/llmroute`'
complete -c llmroute -n "__fish_llmroute_using_subcommand help; and not __fish_seen_subcommand_from report models cache keys feedback config serve completions man help" -f -a "man" -d 'Print the man page (roff), e.g. `llmroute man | man -l -`'
complete -c llmroute -n "__fish_llmroute_using_subcommand help; and not __fish_seen_subcommand_from report models cache keys feedback config serve completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c llmroute -n "__fish_llmroute_using_subcommand help; and __fish_seen_subcommand_from cache" -f -a "stats" -d 'Entries, size, oldest and newest entry, and the hit rate over a window'
complete -c llmroute -n "__fish_llmroute_using_subcommand help; and __fish_seen_subcommand_from cache" -f -a "clear" -d 'Remove every cached answer'
complete -c llmroute -n "__fish_llmroute_using_subcommand help; and __fish_seen_subcommand_from cache" -f -a "prune" -d 'Remove cached answers older than a duration'
complete -c llmroute -n "__fish_llmroute_using_subcommand help; and __fish_seen_subcommand_from keys" -f -a "create" -d 'Make a key and print its token, once: only its SHA-256 is kept'
complete -c llmroute -n "__fish_llmroute_using_subcommand help; and __fish_seen_subcommand_from keys" -f -a "list" -d 'Every key, with its limits, and whether it is live, revoked or expired'
complete -c llmroute -n "__fish_llmroute_using_subcommand help; and __fish_seen_subcommand_from keys" -f -a "show" -d 'One key\'s policy and what it spent this period'
complete -c llmroute -n "__fish_llmroute_using_subcommand help; and __fish_seen_subcommand_from keys" -f -a "revoke" -d 'Revoke a key: a running server refuses its token within seconds'
complete -c llmroute -n "__fish_llmroute_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "path" -d 'Print where the config file, the store and the catalogue live'
complete -c llmroute -n "__fish_llmroute_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "show" -d 'Print the effective configuration (flags, environment, file, defaults) as TOML'
