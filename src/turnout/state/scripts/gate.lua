-- turnout: one batch of gate operations (rate-limit admissions, refunds, probe leases), atomically.
-- Time is the server's (TIME), so replicas with skewed clocks agree on the window.
--
-- KEYS: 3 per operation: window zset, window token total, probe lease zset (one deployment; one hash tag).
-- ARGV[1]: window length in microseconds; then 7 per operation:
--   "a" rpm tpm tokens member probes lease_us   admit (rpm/tpm -1 = none; probes 0 = not a probe)
--   "r" tokens member - - - -                    refund: the admission `member` used no tokens after all
--   "f" tokens member - - - -                    forget: the admission `member` was the client's fault: uncount it
--   "p" member - - - - -                         release the probe lease `member`
--   "s" tokens member at_us - - -                resync: count an admission made while Redis was away
-- Returns {seconds, microseconds, result per operation}; an admit's result is 0 admitted, 1 over rpm, 2 over
-- tpm, 3 probe refused (another replica holds the lease), plus 4 * the milliseconds until an admission of that
-- size would fit (over rpm or tpm); other operations return 0.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local horizon = now - window
local keep_ms = math.floor(window / 1000) + 1000
local out = {t[1], t[2]}

local function expire(zk, tk)
  local old = redis.call('ZRANGEBYSCORE', zk, '-inf', horizon)
  if #old == 0 then
    return
  end
  local freed = 0
  for _, m in ipairs(old) do
    freed = freed + (tonumber(string.match(m, ':(%d+)$')) or 0)
  end
  redis.call('ZREMRANGEBYSCORE', zk, '-inf', horizon)
  if freed > 0 and redis.call('DECRBY', tk, freed) < 0 then
    redis.call('SET', tk, 0)
  end
end

local function count(zk, tk, member, tokens, at)
  if redis.call('ZADD', zk, 'NX', at, member .. ':' .. string.format('%d', tokens)) == 1 and tokens > 0 then
    redis.call('INCRBY', tk, tokens)
  end
  redis.call('PEXPIRE', zk, keep_ms)
  redis.call('PEXPIRE', tk, keep_ms)
end

-- Microseconds until `n` admissions (rpm) and `tokens` more tokens (tpm) fit: when enough of the oldest leave.
local function wait_us(zk, tk, rpm, tpm, tokens, n)
  local wait = 0
  if rpm >= 0 and n >= rpm then
    local e = redis.call('ZRANGE', zk, n - rpm, n - rpm, 'WITHSCORES')
    if e[2] then
      wait = tonumber(e[2]) + window - now
    end
  end
  local held = tonumber(redis.call('GET', tk) or '0')
  if tpm >= 0 and n > 0 and held + tokens > tpm then
    local need = held + tokens - tpm
    local entries = redis.call('ZRANGE', zk, 0, -1, 'WITHSCORES')
    local freed, leaves = 0, now
    for i = 1, #entries, 2 do
      freed = freed + (tonumber(string.match(entries[i], ':(%d+)$')) or 0)
      leaves = tonumber(entries[i + 1])
      if freed >= need then
        break
      end
    end
    wait = math.max(wait, leaves + window - now)
  end
  return math.max(0, wait)
end

local function admit(zk, tk, pk, rpm, tpm, tokens, member, probes, lease)
  if probes > 0 then
    redis.call('ZREMRANGEBYSCORE', pk, '-inf', now)
    if redis.call('ZCARD', pk) >= probes then
      return 3
    end
    redis.call('ZADD', pk, now + lease, member)
    redis.call('PEXPIRE', pk, math.floor(lease / 1000) + 1000)
  end
  if rpm < 0 and tpm < 0 then
    return 0
  end
  expire(zk, tk)
  local n = redis.call('ZCARD', zk)
  local result = 0
  if rpm >= 0 and n >= rpm then
    result = 1
  elseif tpm >= 0 and n > 0 and tonumber(redis.call('GET', tk) or '0') + tokens > tpm then
    result = 2
  end
  if result == 0 then
    count(zk, tk, member, tokens, now)
    return 0
  end
  if probes > 0 then
    redis.call('ZREM', pk, member)
  end
  return result + 4 * math.floor(wait_us(zk, tk, rpm, tpm, tokens, n) / 1000)
end

local function forget(zk, tk, tokens, member)
  if redis.call('ZREM', zk, member .. ':' .. string.format('%d', tokens)) == 1 and tokens > 0 then
    if redis.call('DECRBY', tk, tokens) < 0 then
      redis.call('SET', tk, 0)
    end
  end
end

local function refund(zk, tk, tokens, member)
  local old = member .. ':' .. string.format('%d', tokens)
  local score = redis.call('ZSCORE', zk, old)
  if score then
    redis.call('ZREM', zk, old)
    redis.call('ZADD', zk, score, member .. ':0')
    if redis.call('DECRBY', tk, tokens) < 0 then
      redis.call('SET', tk, 0)
    end
  end
end

for i = 0, #KEYS / 3 - 1 do
  local zk, tk, pk = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local a = 2 + 7 * i
  local kind = ARGV[a]
  local result = 0
  if kind == 'a' then
    result = admit(zk, tk, pk, tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), ARGV[a + 4],
      tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]))
  elseif kind == 'r' then
    refund(zk, tk, tonumber(ARGV[a + 1]), ARGV[a + 2])
  elseif kind == 'f' then
    forget(zk, tk, tonumber(ARGV[a + 1]), ARGV[a + 2])
  elseif kind == 'p' then
    redis.call('ZREM', pk, ARGV[a + 1])
  elseif kind == 's' then
    local at = tonumber(ARGV[a + 3])
    if at > horizon then
      count(zk, tk, ARGV[a + 2], tonumber(ARGV[a + 1]), at)
    end
  end
  out[#out + 1] = result
end
return out
