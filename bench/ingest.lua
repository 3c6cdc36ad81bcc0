-- wrk script: POST /v1/events with batches of BATCH events, each with a fresh
-- random UUID (v4-like) as event_id. Environment: COMMONLAB_KEY, BATCH (500).
local key = os.getenv("COMMONLAB_KEY")
local batch = tonumber(os.getenv("BATCH") or "500")
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
wrk.method = "POST"
wrk.path = "/v1/events"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
local function uuid()
  return string.format("%08x-%04x-4%03x-%04x-%04x%08x",
    math.random(0, 0xffffffff), math.random(0, 0xffff), math.random(0, 0xfff),
    math.random(0x8000, 0xbfff), math.random(0, 0xffff), math.random(0, 0xffffffff))
end
request = function()
  local parts = {}
  for i = 1, batch do
    parts[i] = '{"event_id":"' .. uuid() .. '","unit":"m' .. math.random(1, 200000) ..
      '","community":"wiki-a","name":"contribution_created","timestamp":"2026-11-01T10:00:00Z","properties":{"edits":' .. (i % 7) .. '}}'
  end
  return wrk.format(nil, nil, nil, "[" .. table.concat(parts, ",") .. "]")
end
