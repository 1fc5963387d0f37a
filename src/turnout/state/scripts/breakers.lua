-- turnout: publish breaker changes decided by one replica (batched), stamped with the server's time.
-- Lua numbers are doubles: times are formatted with %.0f (a plain `..` would write 1.79e+15).
-- KEYS: breakers hash. ARGV[1]: channel; then 5 per change: deployment, state, open_for_us, trips, origin.
-- Each change is stored as "state|until_us|trips|changed_us|origin" and published as
-- "deployment|state|until_us|trips|changed_us|origin|now_us" (receivers compute the time left from it).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 2, #ARGV, 5 do
  local deployment, state = ARGV[i], ARGV[i + 1]
  local open_until = 0
  if state == 'open' then
    open_until = now + tonumber(ARGV[i + 2])
  end
  local stamp = string.format('%.0f', now)
  local value = state .. '|' .. string.format('%.0f', open_until) .. '|' .. ARGV[i + 3] .. '|' .. stamp .. '|'
    .. ARGV[i + 4]
  redis.call('HSET', KEYS[1], deployment, value)
  redis.call('PUBLISH', ARGV[1], deployment .. '|' .. value .. '|' .. stamp)
end
return {t[1], t[2]}
