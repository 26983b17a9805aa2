"""The parts of bench/harness.py, which runs them in order:

  common    the environment bench/run sets, the sizes, the log, scratch files
  meter     a command's time and peak RSS, a process's CPU time and memory
  runs      one run to its end: llmroute, the peer, the client floor, wrk's limit
  servers   servers in sessions of their own: fakes, `llmroute serve`, the peers
  load      oha at a fixed rate, wrk at the most, with the server's CPU and memory
  batch     scenarios 1 to 4: overhead, latency-bound, cached re-run, memory
  commands  scenarios 5 to 8: decision time, start-up, `report`, routing quality
  serve     scenarios 9 and 10: `llmroute serve` against its peers, and a soak
  shared    scenario 11: Redis on the hot path
  quality   scenario 12: quality learned from outcomes, feedback intake, decision time
  upstreams scenario 13: routing overhead with three upstreams against one

Each uses only those above it.
"""
