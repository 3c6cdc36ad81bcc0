-- wrk script: POST /v1/events with batches of BATCH events, each with a fresh
-- event_id: random (v4-like, the default) or time-ordered (IDS=v7, as the
-- client crate sends). Event times are the current second, as live
-- telemetry has them. Environment: COMMONLAB_KEY, BATCH (500), IDS (v4|v7).
local key = os.getenv("COMMONLAB_KEY")
local batch = tonumber(os.getenv("BATCH") or "500")
local v7 = os.getenv("IDS") == "v7"
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
wrk.method = "POST"
wrk.path = "/v1/events"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
local function uuid4()
  return string.format("%08x-%04x-4%03x-%04x-%04x%08x",
    math.random(0, 0xffffffff), math.random(0, 0xffff), math.random(0, 0xfff),
    math.random(0x8000, 0xbfff), math.random(0, 0xffff), math.random(0, 0xffffffff))
end
-- UUIDv7: 48-bit milliseconds, then 12 bits of a per-thread counter, then
-- random bits; increasing within a thread.
local seq = 0
local function uuid7()
  seq = seq + 1
  local ms = os.time() * 1000 + math.floor(seq / 4096) % 1000
  local hi = math.floor(ms / 65536)
  local lo = ms % 65536
  return string.format("%08x-%04x-7%03x-%04x-%04x%08x",
    hi, lo, seq % 4096,
    math.random(0x8000, 0xbfff), math.random(0, 0xffff), math.random(0, 0xffffffff))
end
local uuid = v7 and uuid7 or uuid4
request = function()
  local parts = {}
  local now = os.date("!%Y-%m-%dT%H:%M:%SZ")
  for i = 1, batch do
    parts[i] = '{"event_id":"' .. uuid() .. '","unit":"m' .. math.random(1, 200000) ..
      '","community":"wiki-a","name":"contribution_created","timestamp":"' .. now ..
      '","properties":{"edits":' .. (i % 7) .. '}}'
  end
  return wrk.format(nil, nil, nil, "[" .. table.concat(parts, ",") .. "]")
end
