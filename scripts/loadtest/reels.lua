-- wrk script: GET /api/v1/reels as many different users, one token per line in $TOKENS_FILE.
local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do
  tokens[#tokens + 1] = line
end
local next_token = math.random(#tokens)
local limit = os.getenv("LIMIT") or "40"

request = function()
  next_token = next_token % #tokens + 1
  return wrk.format("GET", "/api/v1/reels?limit=" .. limit,
    { ["Authorization"] = "Bearer " .. tokens[next_token] })
end
