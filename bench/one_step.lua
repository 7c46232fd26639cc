-- wrk script for bench/rush.py --one-step: POST /api/v1/bookings with a random start from
-- STARTS_FILE and a person of its own per request; counts answers by status.
local starts = {}
local counter = 0
local threads = {}
c201 = 0
c409 = 0
cother = 0

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(os.getenv("STARTS_FILE")) do
    table.insert(starts, line)
  end
  math.randomseed(os.time() + id * 7919)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local start = starts[math.random(#starts)]
  local body = string.format(
    '{"service_id":"%s","start":"%s","citizen":{"name":"B %d %d","email":"b%d.%d@example.org"}}',
    os.getenv("SERVICE"), start, id, counter, id, counter)
  return wrk.format(nil, "/api/v1/bookings", nil, body)
end

function response(status, headers, body)
  if status == 201 then c201 = c201 + 1
  elseif status == 409 then c409 = c409 + 1
  else cother = cother + 1 end
end

function done(summary, latency, requests)
  local a, b, c = 0, 0, 0
  for _, thread in ipairs(threads) do
    a = a + thread:get("c201")
    b = b + thread:get("c409")
    c = c + thread:get("cother")
  end
  io.write(string.format("STATUS 201 %d\nSTATUS 409 %d\nSTATUS other %d\n", a, b, c))
  io.write(string.format("LATENCY p50 %.2f p99 %.2f\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
