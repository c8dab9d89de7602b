-- wrk script of bench/api.py: method, body and headers from the environment
-- (WRK_METHOD, WRK_BODY, WRK_HEADERS as a JSON object of strings), and one JSON report line.
--
-- WRK_KEYS_FILE (optional): one "<API key><TAB><audio id>" line per account. Each request then
-- picks one line at random: it is sent with "Authorization: Bearer <key>", and "%AUDIO%" in
-- WRK_BODY becomes that account's audio id. The requests are formatted once per thread.

local method = os.getenv("WRK_METHOD") or "GET"
local body = os.getenv("WRK_BODY") or ""
local headers = {}
for name, value in string.gmatch(os.getenv("WRK_HEADERS") or "{}", '"([^"]+)"%s*:%s*"([^"]*)"') do
  headers[name] = value
end

wrk.method = method
if body ~= "" then wrk.body = body end
wrk.headers = headers

local prepared = {}

init = function(args)
  local path = os.getenv("WRK_KEYS_FILE")
  if path == nil or path == "" then return end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  for line in io.lines(path) do
    local key, audio = line:match("^(%S+)\t(%S+)$")
    if key ~= nil then
      local h = {}
      for name, value in pairs(headers) do h[name] = value end
      h["Authorization"] = "Bearer " .. key
      local b = nil
      if body ~= "" then b = body:gsub("%%AUDIO%%", audio) end
      prepared[#prepared + 1] = wrk.format(method, nil, h, b)
    end
  end
end

request = function()
  if #prepared == 0 then return wrk.format() end
  return prepared[math.random(#prepared)]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, ' ..
    '"non_2xx": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    e.status, e.connect, e.read, e.write, e.timeout))
end
