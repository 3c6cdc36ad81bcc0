-- wrk script: bulk OFREP evaluations (every flag) with 1,000 rotating
-- contexts, no If-None-Match. Environment: COMMONLAB_KEY (sdk key).
local key = os.getenv("COMMONLAB_KEY")
local communities = { "wiki-a", "coop-b", "social-c", "hackerspace-d" }
local bodies = {}
local n = 1000
for i = 1, n do
  bodies[i] = string.format('{"context":{"targetingKey":"member-%d","community":"%s","role":"editor"}}',
    i, communities[(i % #communities) + 1])
end
local i = 0
wrk.method = "POST"
wrk.path = "/ofrep/v1/evaluate/flags"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
request = function()
  i = (i % n) + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
