-- wrk script of scripts/bench-floor.sh. MODE selects the request:
--   floor   GET /floor                               (one token per line of $TOKENS_FILE)
--   first   GET /api/v1/reels?limit=40                (returning users, round robin)
--   miss    GET /api/v1/reels?limit=40                (each token once: a new user per request)
--   cursor  GET /api/v1/reels?limit=40&cursor=C       (lines "token cursor": a cached session's page)
--   events  POST /api/v1/events with 100 view events (demo videos 1..$VIDEOS)
local mode = os.getenv("MODE") or "first"
local lines = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do
  lines[#lines + 1] = line
end
local videos = tonumber(os.getenv("VIDEOS") or "10000")
local next_line = 0

local function uuid()
  return string.format("%08x-%04x-4%03x-8%03x-%06x%06x", math.random(0, 0x7fffffff),
    math.random(0, 0xffff), math.random(0, 0xfff), math.random(0, 0xfff),
    math.random(0, 0xffffff), math.random(0, 0xffffff))
end

local function video(n)
  return string.format("00000002-0000-4000-8000-%012x", n)
end

math.randomseed(os.time())

request = function()
  next_line = next_line % #lines + 1
  local line = lines[next_line]
  if mode == "floor" then
    return wrk.format("GET", "/floor", { ["Authorization"] = "Bearer " .. line })
  elseif mode == "cursor" then
    local token, cursor = line:match("^(%S+)%s+(%S+)$")
    return wrk.format("GET", "/api/v1/reels?limit=40&cursor=" .. cursor,
      { ["Authorization"] = "Bearer " .. token })
  elseif mode == "events" then
    local events = {}
    for i = 1, 100 do
      events[i] = string.format('{"event_id":"%s","video_id":"%s","type":"view"}', uuid(),
        video(math.random(1, videos)))
    end
    return wrk.format("POST", "/api/v1/events",
      { ["Authorization"] = "Bearer " .. line, ["Content-Type"] = "application/json" },
      '{"events":[' .. table.concat(events, ",") .. ']}')
  else
    return wrk.format("GET", "/api/v1/reels?limit=40", { ["Authorization"] = "Bearer " .. line })
  end
end
