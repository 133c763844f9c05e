-- Publish one job event in one round trip (docs/events.md):
-- assign seq, append to history, update the live snapshot, fan out to the groups.
--
-- The fan-out is channels_redis.pubsub.RedisPubSubChannelLayer's group_send: one
-- PUBLISH per group, to the group's pub/sub channel, of the msgpack-encoded message, so
-- the ws tier receives with that layer (jobcast.events.layer).
-- tests/integration/test_publisher.py pins this against the installed channels_redis.
--
-- KEYS: 1 seq, 2 history stream, 3 live hash
-- ARGV: 1 event JSON without seq, 2 event type, 3 history maxlen, 4 key ttl,
--       5 job id, 6 the event's ts (for the ws tier's latency metric),
--       7 the highest seq the caller knows the job had (from the job row or the running job),
--       8.. the groups' pub/sub channel names
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
    redis.call('SET', KEYS[1], ARGV[7])
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

local message = cmsgpack.pack({
  type = message_type, text = text, seq = seq, job_id = ARGV[5], event = ARGV[2], ts = tonumber(ARGV[6]),
})
local receivers = 0  -- ws processes with a socket in one of the groups
for g = 8, #ARGV do
  receivers = receivers + redis.call('PUBLISH', ARGV[g], message)
end
return {seq, receivers}
