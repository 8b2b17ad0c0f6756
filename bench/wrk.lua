-- wrk script for bench/run: one request shape per run, set from the environment, and one
-- machine-readable line at the end ("WRKJSON {...}") with throughput, latency percentiles
-- and error counts.
--
-- Environment:
--   WRK_METHOD   GET (default), POST, DELETE…
--   WRK_BODY     request body (sent as application/json when set)
--   WRK_AUTH     Authorization header value (an access token)
--   WRK_EXPECT   "2xx" (default): any status outside 200-299 is an error;
--                a number such as "401": any other status is an error.
--   WRK_STATUSES "1": count every response status exactly (a Lua callback per response,
--                which costs the load generator some CPU). Required when WRK_EXPECT is a
--                number. Without it, non-2xx responses are counted from wrk's own
--                `errors.status` (statuses >= 400); bench/run checks the exact status of
--                every scenario with curl before measuring, so a 3xx cannot slip through.

wrk.method = os.getenv("WRK_METHOD") or "GET"
local body = os.getenv("WRK_BODY")
if body and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end
local auth = os.getenv("WRK_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end

local expect = os.getenv("WRK_EXPECT") or "2xx"
local count_statuses = os.getenv("WRK_STATUSES") == "1" or expect ~= "2xx"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

if count_statuses then
  -- Per-thread table (each wrk thread has its own Lua state); merged in done().
  statuses = {}
  function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local merged = {}
  local bad = 0
  if count_statuses then
    for _, t in ipairs(threads) do
      local s = t:get("statuses")
      if s then
        for status, n in pairs(s) do
          merged[status] = (merged[status] or 0) + n
        end
      end
    end
    for status, n in pairs(merged) do
      local ok
      if expect == "2xx" then
        ok = status >= 200 and status < 300
      else
        ok = status == tonumber(expect)
      end
      if not ok then bad = bad + n end
    end
  else
    bad = e.status
  end
  local parts = {}
  for status, n in pairs(merged) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_s":%.3f,"rps":%.1f,"bytes":%d,' ..
    '"latency_ms":{"p50":%.3f,"p90":%.3f,"p99":%.3f,"max":%.3f,"mean":%.3f},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status_ge_400":%d},' ..
    '"expect":"%s","statuses":{%s},"bad_status":%d}\n',
    summary.requests, seconds, summary.requests / seconds, summary.bytes,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000,
    e.connect, e.read, e.write, e.timeout, e.status,
    expect, table.concat(parts, ","), bad))
end
