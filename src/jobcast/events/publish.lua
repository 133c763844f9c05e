-- Publish one job event in one round trip (docs/events.md):
-- assign seq, append to history, update the live snapshot, fan out to the groups.
--
-- The fan-out writes channels_redis.core.RedisChannelLayer's own storage format
-- (group sorted sets, per-process channel sorted sets, msgpack message with a
-- 12-byte prefix and __asgi_channel__), so the ws tier receives with the stock layer.
-- tests/integration/test_publisher.py pins this against the installed channels_redis.
--
-- KEYS: 1 seq, 2 history stream, 3 live hash, 4.. group sorted sets
-- ARGV: 1 event JSON without seq, 2 event type, 3 history maxlen, 4 key ttl,
--       5 now, 6 group expiry, 7 channel message expiry, 8 channel capacity,
--       9 channel layer prefix, 10 job id, 11 the event's ts (for the ws tier's latency metric),
--       12 the highest seq the caller knows the job had (from the job row or the running job)
--
-- A 'snapshot' (a job's first appearance on its owner's streams) is not one of the
-- job's events: it gets no seq and no history, only the fan-out.
local seq = 0
local text = ARGV[1]
local message_type = 'job.snapshot'
if ARGV[2] ~= 'snapshot' then
  message_type = 'job.event'
  -- A counter that vanished (Redis restarted without persistence) starts again above
  -- the highest seq the publisher knows, so seqs never repeat: resuming clients then
  -- get a reset snapshot instead of events they would take for duplicates.
  if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('SET', KEYS[1], ARGV[12])
  end
  seq = redis.call('INCR', KEYS[1])
  text = '{"seq":' .. seq .. ',' .. string.sub(ARGV[1], 2)
  local ttl = tonumber(ARGV[4])
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], seq .. '-0', 'e', text)
  redis.call('HSET', KEYS[3], 'seq', seq)
  if ARGV[2] == 'progress' or ARGV[2] == 'state' then
    redis.call('HSET', KEYS[3], ARGV[2], text)
  end
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
end

local now = tonumber(ARGV[5])
local group_expiry = tonumber(ARGV[6])
local expiry = tonumber(ARGV[7])
local capacity = tonumber(ARGV[8])
local prefix = ARGV[9]

-- Channels of one ws process share one sorted set ("specific.<id>!"): one message each.
local by_key = {}
local order = {}
for g = 4, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[g], 0, math.floor(now) - group_expiry)
  local members = redis.call('ZRANGE', KEYS[g], 0, -1)
  for _, channel in ipairs(members) do
    local bang = string.find(channel, '!', 1, true)
    local key = prefix .. (bang and string.sub(channel, 1, bang) or channel)
    if not by_key[key] then
      by_key[key] = {}
      table.insert(order, key)
    end
    table.insert(by_key[key], channel)
  end
end

local delivered = 0
local dropped = 0
-- Zero-padded seq keeps one job's events in order when two share a score.
local member_prefix = string.format('%012d', seq % 1000000000000)
for _, key in ipairs(order) do
  redis.call('ZREMRANGEBYSCORE', key, 0, math.floor(now) - expiry)
  if redis.call('ZCARD', key) < capacity then
    local message = cmsgpack.pack({
      type = message_type, text = text, seq = seq, job_id = ARGV[10],
      event = ARGV[2], ts = tonumber(ARGV[11]),
      __asgi_channel__ = by_key[key],
    })
    redis.call('ZADD', key, now, member_prefix .. message)
    redis.call('EXPIRE', key, expiry)
    delivered = delivered + 1
  else
    dropped = dropped + 1
  end
end
return {seq, delivered, dropped}
