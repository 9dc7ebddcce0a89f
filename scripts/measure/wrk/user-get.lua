-- GET /user/get/{id} with ids drawn uniformly from 1..MAX_ID.
-- wrk.format builds a table and runs string.format per header on every call, about 2 µs of the
-- load generator's CPU per request on a machine it shares with the server; the request is
-- formatted once instead and only the id is spliced in (the bytes sent are the same).
local max_id = tonumber(os.getenv("MAX_ID") or "1000000")
local head, tail
function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  local template = wrk.format("GET", "/user/get/")
  local at = template:find(" HTTP/1.1\r\n", 1, true)
  head, tail = template:sub(1, at - 1), template:sub(at)
end
function request()
  return head .. math.random(1, max_id) .. tail
end
