-- POST /login for generated users (password of `socialnet fake users`), ids from 1..MAX_ID.
local max_id = tonumber(os.getenv("MAX_ID") or "1000000")
function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end
function request()
  local body = '{"id":"' .. math.random(1, max_id) .. '","password":"socialnet-lab"}'
  return wrk.format("POST", "/login", { ["Content-Type"] = "application/json" }, body)
end
