-- GET /user/search with query strings read from PAIRS_FILE (one per line, already URL-encoded).
-- Each request is formatted once per thread (wrk.format per call costs the load generator CPU
-- that the server on the same machine would otherwise get).
local queries = {}
for line in io.lines(os.getenv("PAIRS_FILE")) do
  queries[#queries + 1] = line
end
local requests = {}
function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  for i, query in ipairs(queries) do
    requests[i] = wrk.format("GET", "/user/search?" .. query)
  end
end
function request()
  return requests[math.random(#requests)]
end
