-- turnout: add one flush of usage and spend counters to their hashes, exactly once.
-- KEYS[1]: the flush marker; KEYS[2..]: the hashes to add to (day, month and all-time usage; spend per period id).
-- ARGV[1]: marker ttl in seconds; then per hash, in KEYS order: its ttl in seconds (0 = keep it), the number of
-- field/increment pairs, and the pairs. A flush whose marker exists was applied already (a retry after a lost
-- reply): no-op.
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) == false then
  return 0
end
local a = 2
for k = 2, #KEYS do
  local ttl = tonumber(ARGV[a])
  local n = tonumber(ARGV[a + 1])
  for j = a + 2, a + 2 * n, 2 do
    redis.call('HINCRBY', KEYS[k], ARGV[j], tonumber(ARGV[j + 1]))
  end
  if ttl > 0 then
    redis.call('EXPIRE', KEYS[k], ttl)
  end
  a = a + 2 + 2 * n
end
return 1
