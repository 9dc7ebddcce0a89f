-- GET /user/search with query strings read from PAIRS_FILE (one per line, already URL-encoded).
local queries = {}
for line in io.lines(os.getenv("PAIRS_FILE")) do
  queries[#queries + 1] = line
end
function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end
function request()
  return wrk.format("GET", "/user/search?" .. queries[math.random(#queries)])
end
