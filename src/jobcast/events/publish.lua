-- Publish events of one job in one round trip (docs/events.md): for each event, assign
-- its seq and append it to the history; then update the live snapshot and fan out.
--
-- The fan-out is channels_redis.pubsub.RedisPubSubChannelLayer's group_send: one
-- PUBLISH per group, to the group's pub/sub channel, of one msgpack-encoded message (a
-- `job.batch` message holding them all when there are several events), so the ws tier
-- receives with that layer (jobcast.ws.layer).
-- tests/integration/test_publisher.py pins this against the installed channels_redis.
--
-- KEYS: 1 seq, 2 history stream, 3 live hash
-- ARGV: 1 history maxlen, 2 key ttl, 3 job id,
--       4 the highest seq the caller knows the job had (from the job row or the running job),
--       5 '1' when this repeats a publish whose reply was lost (Redis went away), else '0',
--       6 number of groups G, 7 .. 6+G the groups' pub/sub channel names,
--       then per event: type, JSON without seq, ts (for the ws tier's latency metric),
--       terminal ('1' on the job's last event, else '0')
--
-- The publisher marks the terminal event, so no reader has to look inside the JSON: the
-- channel-layer message carries `terminal = true` and the history entry an `x` field.
-- A 'snapshot' (a job's first appearance on its owner's streams) is not one of the
-- job's events: it gets no seq and no history, only the fan-out.
local job_id = ARGV[3]
local group_count = tonumber(ARGV[6])
local first = 7 + group_count  -- the first event's arguments
local messages = {}
local seq = 0
local latest = {}  -- the batch's last progress and last state event, for the live snapshot

-- A repeat of a publish that did run (only its reply was lost) must not run twice: the
-- job's counter then already stands at the caller's seq plus this batch's events.
if ARGV[5] == '1' and ARGV[first] ~= 'snapshot' then
  local counter = tonumber(redis.call('GET', KEYS[1]) or '-1')
  if counter >= tonumber(ARGV[4]) + (#ARGV - first + 1) / 4 then
    return {counter, 0}
  end
end

for i = first, #ARGV, 4 do
  local event_type, text = ARGV[i], ARGV[i + 1]
  local terminal = ARGV[i + 3] == '1'
  local message_type = 'job.snapshot'
  if event_type ~= 'snapshot' then
    message_type = 'job.event'
    -- A counter that vanished (Redis restarted without persistence) starts again above
    -- the highest seq the publisher knows, so seqs never repeat: resuming clients then
    -- get a reset snapshot instead of events they would take for duplicates.
    if seq == 0 and redis.call('EXISTS', KEYS[1]) == 0 then
      redis.call('SET', KEYS[1], ARGV[4])
    end
    seq = redis.call('INCR', KEYS[1])
    text = '{"seq":' .. seq .. ',' .. string.sub(text, 2)
    if terminal then
      redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], seq .. '-0', 'e', text, 'k', event_type, 'x', '1')
    else
      redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], seq .. '-0', 'e', text, 'k', event_type)
    end
    if event_type == 'progress' or event_type == 'state' then
      latest[event_type] = text
    end
  end
  table.insert(messages, {
    type = message_type, text = text, seq = seq, job_id = job_id, event = event_type, ts = tonumber(ARGV[i + 2]),
    terminal = terminal,
  })
end

if seq > 0 then
  redis.call('HSET', KEYS[3], 'seq', seq)
  for event_type, text in pairs(latest) do
    redis.call('HSET', KEYS[3], event_type, text)
  end
  for k = 1, 3 do
    redis.call('EXPIRE', KEYS[k], tonumber(ARGV[2]))
  end
end

local payload
if #messages == 1 then
  payload = cmsgpack.pack(messages[1])
else
  payload = cmsgpack.pack({type = 'job.batch', messages = messages})
end
local receivers = 0  -- ws processes with a socket in one of the groups
for g = 7, 6 + group_count do
  receivers = receivers + redis.call('PUBLISH', ARGV[g], payload)
end
return {seq, receivers}
