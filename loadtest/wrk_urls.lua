-- wrk script for loadtest/bench_cache.py: requests the paths listed in a file, one per
-- line, in turn (`loop`: round and round until wrk's -d ends; `once`: each path once,
-- then stop), counts the X-Cache-Status answers, and prints one JSON line of results.
--
--   wrk -t1 -c16 -d8s -s loadtest/wrk_urls.lua http://127.0.0.1:PORT -- PATHS_FILE loop
--
-- One thread only (-t1): `once` stops that thread after as many answers as paths.

local paths = {}
local nxt = 0
local once = false
local answers = 0
hits, misses, others = 0, 0, 0

function init(args)
  for line in io.lines(args[1]) do
    if line ~= "" then paths[#paths + 1] = line end
  end
  once = args[2] == "once"
end

function request()
  nxt = nxt % #paths + 1
  return wrk.format("GET", paths[nxt])
end

function response(status, headers, body)
  local cache = headers["X-Cache-Status"] or headers["x-cache-status"]
  if cache == "HIT" then
    hits = hits + 1
  elseif cache == "MISS" then
    misses = misses + 1
  else
    others = others + 1
  end
  answers = answers + 1
  if once and answers >= #paths then
    wrk.thread:stop()
  end
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests)
  local h, m, o = 0, 0, 0
  for _, t in ipairs(threads) do
    h = h + t:get("hits")
    m = m + t:get("misses")
    o = o + t:get("others")
  end
  io.write(string.format(
    'KUSH_WRK {"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d,"hit":%d,"miss":%d,"other":%d}\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), h, m, o))
end
