-- wrk -s bench/refresh.lua -t1 -c1: rotates one session's refresh token on
-- every request (each answer's token feeds the next request).
local token = os.getenv("REFRESH_TOKEN")
request = function()
  return wrk.format("POST", "/v1/auth/refresh", {["Content-Type"] = "application/json"},
    '{"refresh_token": "' .. token .. '"}')
end
response = function(status, headers, body)
  local next = body:match('"refresh_token":"([^"]+)"')
  if next then token = next end
end
