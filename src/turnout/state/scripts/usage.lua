-- turnout: add one flush of usage counters to the day, month and all-time hashes, exactly once.
-- KEYS: flush marker, then 3 per day: day hash, month hash, all-time hash.
-- ARGV[1]: marker ttl in seconds, ARGV[2]: day hash ttl in seconds; then per day: the number of field/increment
-- pairs, and the pairs. A flush whose marker exists was applied already (a retry after a lost reply): no-op.
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) == false then
  return 0
end
local day_ttl = tonumber(ARGV[2])
local a = 3
for k = 2, #KEYS, 3 do
  local n = tonumber(ARGV[a])
  for j = a + 1, a + 2 * n, 2 do
    local by = tonumber(ARGV[j + 1])
    redis.call('HINCRBY', KEYS[k], ARGV[j], by)
    redis.call('HINCRBY', KEYS[k + 1], ARGV[j], by)
    redis.call('HINCRBY', KEYS[k + 2], ARGV[j], by)
  end
  redis.call('EXPIRE', KEYS[k], day_ttl)
  a = a + 1 + 2 * n
end
return 1
