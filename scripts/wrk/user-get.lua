-- GET /user/get/{id} with ids drawn uniformly from 1..MAX_ID.
local max_id = tonumber(os.getenv("MAX_ID") or "1000000")
function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end
function request()
  return wrk.format("GET", "/user/get/" .. math.random(1, max_id))
end
