-- wrk script of the HTTP benchmark (bench/http_wrk.py): POST a JSON body to the URL's path, count the
-- answers by status code and keep the last 202's body (the last run admitted), then print one line of
-- JSON: requests, seconds, latency percentiles (µs, from wrk's own distribution), statuses, errors.
-- The body comes from the environment (FLUE_WRK_BODY), so one script serves every workflow.

wrk.method = "POST"
wrk.body = os.getenv("FLUE_WRK_BODY") or "{}"
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  last = ""
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 202 then
    last = body
  end
end

function done(summary, latency, requests)
  local counts, parts, last_run = {}, {}, ""
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses")) do
      counts[code] = (counts[code] or 0) + n
    end
    local run = string.match(thread:get("last") or "", '"runId"%s*:%s*"([^"]+)"')
    if run then
      last_run = run
    end
  end
  for code, n in pairs(counts) do
    table.insert(parts, string.format('"%d": %d', code, n))
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d,'
      .. ' "mean_us": %.1f, "statuses": {%s}, "errors": {"connect": %d, "read": %d, "write": %d,'
      .. ' "status": %d, "timeout": %d}, "last_run": "%s"}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.status, e.timeout, last_run))
end
