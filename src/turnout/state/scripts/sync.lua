-- turnout: the background sync's heartbeat, one round trip per sync interval.
-- KEYS: replicas zset, epoch key, breakers hash. ARGV: replica id, heartbeat ttl in microseconds, a new epoch
-- (used only when the dataset has none, i.e. it is new or was lost).
-- Returns {seconds, microseconds, live replicas, epoch, breakers hash as a flat list}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], math.floor(ttl / 1000) * 2)
local replicas = redis.call('ZCARD', KEYS[1])
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[3]
  redis.call('SET', KEYS[2], epoch)
end
return {t[1], t[2], replicas, epoch, redis.call('HGETALL', KEYS[3])}
