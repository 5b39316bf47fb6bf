-- wrk script: `{ __typename }` as a GraphQL POST; a non-200 answer is counted.
-- wrk -t1 -c32 -d10s -s api/benches/scripts/typename.lua http://127.0.0.1:PORT/graphql
wrk.method = "POST"
wrk.body = '{"query":"{ __typename }"}'
wrk.headers["Content-Type"] = "application/json"
local bad = 0
response = function(status, headers, body)
  if status ~= 200 or not body:find('"__typename":"Query"', 1, true) then bad = bad + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("wrong answers: %d (this thread's count)\n", bad))
end
