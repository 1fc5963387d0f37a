-- turnout: keep one stored response, and keep the responses it continues at least as long.
-- KEYS[1]: the response's hash; KEYS[2..]: the hashes of the responses it continues (its chain).
-- ARGV[1]: ttl in ms; ARGV[2..7]: the fields r (Response JSON), i (input items JSON), c (chain JSON), o (client),
-- t (created, seconds), g (1: rendered by turnout). A chain member that is gone is not recreated; one that lives
-- longer keeps its expiry.
local ttl = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'r', ARGV[2], 'i', ARGV[3], 'c', ARGV[4], 'o', ARGV[5], 't', ARGV[6], 'g', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ttl)
for k = 2, #KEYS do
  local left = redis.call('PTTL', KEYS[k])
  if left >= 0 and left < ttl then
    redis.call('PEXPIRE', KEYS[k], ttl)
  end
end
return 1
