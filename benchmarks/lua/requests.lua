-- Replays the requests of a file (one per line: METHOD<TAB>PATH<TAB>BODY), in a cycle, and
-- prints wrk's figures as one JSON line, with a count of every status outside 2xx/3xx.
-- Arguments after the file are headers sent with every request ("Name: value").
-- Written by benchmarks/wrk.py; run by wrk -s.
local requests = {}
local next_index = 1
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  local common = {}
  for i = 2, #args do
    local name, value = args[i]:match("^([^:]+):%s*(.*)$")
    if name then common[name] = value end
  end
  for line in io.lines(args[1]) do
    local method, path, body = line:match("^([^\t]*)\t([^\t]*)\t?(.*)$")
    local headers = {}
    for name, value in pairs(common) do headers[name] = value end
    if body ~= nil and body ~= "" then
      headers["Content-Type"] = "application/json"
    else
      body = nil
    end
    requests[#requests + 1] = wrk.format(method, path, headers, body)
  end
  next_index = math.random(#requests)
  statuses = {}
end

function request()
  local r = requests[next_index]
  next_index = next_index % #requests + 1
  return r
end

function response(status, headers, body)
  if status >= 400 then
    local key = tostring(status)
    statuses[key] = (statuses[key] or 0) + 1
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses") or {}) do
      counts[#counts + 1] = string.format('"%s":%d', status, n)
    end
  end
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"status_errors":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"statuses":{%s},' ..
    '"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    table.concat(counts, ","), latency:percentile(50), latency:percentile(99)))
end
