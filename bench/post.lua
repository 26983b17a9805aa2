-- wrk script: POST one chat-completions body (the file named by
-- BENCH_BODY_FILE) to the URL given on wrk's command line, with the bearer
-- token BENCH_TOKEN ("bench" when unset) and the header BENCH_HEADER
-- ("Name: value", when set), and print a JSON summary as the last line of
-- the output.
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "bench")
local extra = os.getenv("BENCH_HEADER")
if extra then
  local name, value = extra:match("^([^:]+):%s*(.*)$")
  wrk.headers[name] = value
end

function done(summary, latency, requests)
  local s = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"seconds":%.6f,"requests_per_s":%.3f,"errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, s, summary.requests / s,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
