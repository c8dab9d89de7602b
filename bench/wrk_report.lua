-- wrk script of bench/api.py: method, body and headers from the environment
-- (WRK_METHOD, WRK_BODY, WRK_HEADERS as a JSON object of strings), and one JSON report line.

local method = os.getenv("WRK_METHOD") or "GET"
local body = os.getenv("WRK_BODY") or ""
local headers = {}
for name, value in string.gmatch(os.getenv("WRK_HEADERS") or "{}", '"([^"]+)"%s*:%s*"([^"]*)"') do
  headers[name] = value
end

wrk.method = method
if body ~= "" then wrk.body = body end
wrk.headers = headers

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, ' ..
    '"non_2xx": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    e.status, e.connect, e.read, e.write, e.timeout))
end
