--[[ The Redis run store (flue_node_like/redis_store.py): every operation is one call of one script, so
each is atomic. The rules are those of flue_core/store.py (RunStore), which states them; this is the
same logic over Redis keys, which docs/redis.md lists.

This file is the prelude every script starts with (after steps.lua); the operations are the chunks of
runs_*.lua, each headed "-- op: <name>" and defining the local function <name>. The script of an
operation is steps.lua, this prelude, its chunk, and "return respond(<name>(unpack(ARGV, 4)))"
(flue_node_like/redis_scripts.py): a script per operation, because Lua creates every function a script
defines on every call.

  EVALSHA <sha> 1 <base>layout <base> <origin> <opid> <operation's arguments...>

<base> is "<prefix>:". <origin> names the calling store instance: it is the message published on the
change channel <base>ch:<key> of every key an operation changed (a run id, or :ready, :cancels,
:schedules), so that instance skips its own. A write replies {changed keys, result...}.

<opid> is unique per call of a writing operation (empty for reads). The client sends an unanswered
call again after its connection broke, so a call may arrive twice; an operation that is not a no-op
the second time recognises its <opid>: admit, claim and suspend keep it in the run's hash,
the rarer ones keep their answer under <base>op:<opid> for OP_TTL ms. Appends carry their index,
finish ends a run once: they are repeatable as they are.

The clock: times of the record (created, started, ended, due) are the caller's, as in every store;
worker heartbeats are judged by the server's TIME, so hosts' clocks need not agree on leases.

Events a script writes itself are given as frames built by the caller from event_json (the single
place of the wire shape): head .. index .. mid .. data .. '}'.
]]

local base, origin, opid = ARGV[1], ARGV[2], ARGV[3]
local OP_TTL = 120000
local READY, CANCELS, SCHEDULES = ':ready', ':cancels', ':schedules'
local FINISHED = {completed = true, failed = true, cancelled = true}

local changed, seen = {}, {}
local function mark(key)
  if not seen[key] then
    seen[key] = true
    changed[#changed + 1] = key
  end
end

local function fail(code, ...)
  return redis.error_reply(table.concat({'FLUE', code, ...}, ' '))
end

-- keys ------------------------------------------------------------------------------------------------

local function run_key(id) return base .. 'run:' .. id end
local function events_key(id) return base .. 'ev:' .. id end
local function mailbox_key(id) return base .. 'sig:' .. id end
local function ready_key(wf) return base .. 'ready:' .. wf end
local function held_key(wf) return base .. 'held:' .. wf end
local function keys_key(wf) return base .. 'keys:' .. wf end
local function kept_key(id) return base .. 'kept:' .. id end
local DUE, ENDED = base .. 'due', base .. 'ended'
local WORKERS, BEATS = base .. 'workers', base .. 'beats'

local function load(id)
  local flat = redis.call('HGETALL', run_key(id))
  if #flat == 0 then return nil end
  local row = {}
  for i = 1, #flat, 2 do row[flat[i]] = flat[i + 1] end
  return row
end

local function record(id) return redis.call('HGETALL', run_key(id)) end

-- The list indexes: every run, by workflow, by status, by workflow and status, by parent, by the run it
-- re-runs. Sorted sets of run ids scored by their creation time in ms ("cams"): with ties ordered by id,
-- that is list order.
local function index(row, status)
  redis.call('ZADD', base .. 'runs:st:' .. status, row.cams, row.id)
  redis.call('ZADD', base .. 'runs:wfst:' .. row.wf .. ':' .. status, row.cams, row.id)
end

local function unindex(row)
  redis.call('ZREM', base .. 'runs:st:' .. row.st, row.id)
  redis.call('ZREM', base .. 'runs:wfst:' .. row.wf .. ':' .. row.st, row.id)
end

local function set_status(row, status, ...)
  unindex(row)
  index(row, status)
  row.st = status
  redis.call('HSET', run_key(row.id), 'st', status, ...)
end

-- remembered answers of rare operations, for a call sent twice
local function remembered()
  if opid == '' then return nil end
  return redis.call('GET', base .. 'op:' .. opid)
end

local function remember(value)
  if opid ~= '' then redis.call('SET', base .. 'op:' .. opid, value, 'PX', OP_TTL) end
end

-- events ----------------------------------------------------------------------------------------------

-- The event at index i is the stream entry "<i+1>-0" (stream ids start above 0-0), field e: its JSON.
local function write_event(row, head, mid, data)
  local n = tonumber(row.n)
  redis.call('XADD', events_key(row.id), (n + 1) .. '-0', 'e', head .. n .. mid .. data .. '}')
  row.n = n + 1
  redis.call('HSET', run_key(row.id), 'n', row.n)
  mark(row.id)
end

-- Redis 7 gives a new stream a 4 KB node (stream-node-max-bytes): rewritten, a stream takes what its
-- entries take, and later entries grow it as needed. Done at admission and at the run's end.
local function compact(key)
  redis.call('RESTORE', key, 0, redis.call('DUMP', key), 'REPLACE')
end

-- A signal_received event for each signal received and not announced yet (mid: that event's frame).
local function announce(row, head, mid)
  local received, announced = tonumber(row.sn or '0'), tonumber(row.sann or '0')
  if announced >= received then return end
  local box = mailbox_key(row.id)
  for seq = announced + 1, received do
    write_event(row, head, mid, redis.call('HGET', box, seq .. ':ann'))
  end
  row.sann = received
  redis.call('HSET', run_key(row.id), 'sann', received)
end

-- the ready pool and the due-time index -----------------------------------------------------------------

--[[ Flow control (lua/runs_flow.lua takes from the pool). A pool is a sorted set scored by the time a
run became ready, less its priority times PRIORITY_STEP: higher priority first, then oldest (exact in a
double, and a run of priority 0 scores its ready time as before there were priorities). Runs without
flow-control keys that never started are in <base>ready:<wf>, as they always were; every other run in a
sub-pool of its bucket (bucket_of), listed in <base>pools:<wf> by the score of its first run, so that a
take skips a bucket at its limit without reading its runs. Held runs with a concurrency key are also in
<base>busy:<wf>:<key> and <base>busyk:<wf>; runs a rate-limited take gave out are in <base>starts:
<wf>:<rate key> (score: start time in ms, +inf until claimed; field rt set on the run meanwhile); so are
the first starts of other runs of a workflow a take limited by rate once (<base>rated: workflow -> the
window in ms). ]]
local PRIORITY_STEP = 1e13

local function tag(value)  -- a key value, length-prefixed inside key names; '-' for none
  if value then return #value .. ':' .. value end
  return '-'
end

local function wf_tag(wf) return #wf .. ':' .. wf end
local function pools_key(wf) return base .. 'pools:' .. wf end
local function subpool_key(wf, bucket) return base .. 'pool:' .. wf_tag(wf) .. bucket end
local function busy_key(wf, ck) return base .. 'busy:' .. wf_tag(wf) .. ck end
local function keyed_key(wf) return base .. 'busyk:' .. wf end
local function starts_key(wf, rk) return base .. 'starts:' .. wf_tag(wf) .. tag(rk) end
local RATED = base .. 'rated'

-- A start counted against its rate: starts:<wf>:<rk> expires STARTS_MARGIN ms after its window once
-- nothing is added to it (a rate key per customer would otherwise leave a key per customer ever seen).
-- A run taken and still not claimed by then (+inf) is counted again at its claim.
local STARTS_MARGIN = 300000
local function add_start(wf, rk, score, id, per_ms)
  local starts = starts_key(wf, rk)
  redis.call('ZADD', starts, score, id)
  redis.call('PEXPIRE', starts, math.floor(tonumber(per_ms or '0')) + STARTS_MARGIN)
end


-- A run's sub-pool: by concurrency key once it started (a resumed run is never rate-limited), by both
-- keys before; nil for the default pool.
local function bucket_of(row)
  if row.sams then return 's' .. tag(row.ck) end
  if row.ck or row.rk then return 'n' .. tag(row.ck) .. tag(row.rk) end
  return nil
end

local function pool_score(row, ready_ms)
  if row.pri then return tonumber(ready_ms) - tonumber(row.pri) * PRIORITY_STEP end
  return ready_ms
end

local function pool_add(row, ready_ms)
  local score, bucket = pool_score(row, ready_ms), bucket_of(row)
  if not bucket then
    redis.call('ZADD', ready_key(row.wf), score, row.id)
  else
    redis.call('ZADD', subpool_key(row.wf, bucket), score, row.id)
    redis.call('ZADD', pools_key(row.wf), 'LT', score, bucket)
  end
end

-- A sub-pool's place in <base>pools:<wf>: the score of its first run.
local function refresh(wf, bucket)
  local first = redis.call('ZRANGE', subpool_key(wf, bucket), 0, 0, 'WITHSCORES')
  if #first == 0 then
    redis.call('ZREM', pools_key(wf), bucket)
  else
    redis.call('ZADD', pools_key(wf), first[2], bucket)
  end
end

local function pool_remove(row)
  local bucket = bucket_of(row)
  if not bucket then
    redis.call('ZREM', ready_key(row.wf), row.id)
  elseif redis.call('ZREM', subpool_key(row.wf, bucket), row.id) == 1 then
    refresh(row.wf, bucket)
  end
end

local function hold(row)
  redis.call('SADD', held_key(row.wf), row.id)
  if row.ck then
    redis.call('SADD', busy_key(row.wf, row.ck), row.id)
    redis.call('SADD', keyed_key(row.wf), row.id)
  end
end

local function unhold(row)
  redis.call('SREM', held_key(row.wf), row.id)
  if row.ck then
    redis.call('SREM', busy_key(row.wf, row.ck), row.id)
    redis.call('SREM', keyed_key(row.wf), row.id)
  end
  if row.rt then  -- given out by a rate-limited take and never started: it no longer counts
    redis.call('ZREM', starts_key(row.wf, row.rk), row.id)
    redis.call('HDEL', run_key(row.id), 'rt')
    row.rt = nil
  end
end

local function debounce_key(wf) return base .. 'debounce:' .. wf end

local function to_pool(row, ready_ms)
  redis.call('HSET', run_key(row.id), 'ra', ready_ms)
  redis.call('HDEL', run_key(row.id), 'own')
  unhold(row)
  pool_add(row, ready_ms)
  row.own = nil
  mark(row.id)
  mark(READY)
end

-- A scheduled or waiting run becomes queued in the ready pool.
local function awaken(row, ready_ms)
  if row.dk and row.wk == 'debounce' and redis.call('HGET', debounce_key(row.wf), row.dk) == row.id then
    redis.call('HDEL', debounce_key(row.wf), row.dk)  -- its window closed: later starts make a new run
  end
  redis.call('HDEL', run_key(row.id), 'wa', 'wams', 'wfor', 'wk', 'wn', 'wids')
  redis.call('ZREM', DUE, row.id)
  set_status(row, 'queued')
  to_pool(row, ready_ms)
end

local function children_done(ids)
  for id in string.gmatch(ids or '', '%S+') do
    local status = redis.call('HGET', run_key(id), 'st')
    if status and not FINISHED[status] then return false end
  end
  return true
end

-- The finished children prune kept while this run had not ended (see prune) go back to ENDED, with
-- their own end times; done when it ends, and again when it is deleted in case a version of Flue that
-- kept none ended it.
local function release_kept(id)
  local kept = redis.call('ZRANGE', kept_key(id), 0, -1, 'WITHSCORES')
  for i = 1, #kept, 2 do redis.call('ZADD', ENDED, kept[i + 1], kept[i]) end
  if #kept > 0 then redis.call('DEL', kept_key(id)) end
end

local function undelivered(row, name, latest_ms)
  local box = mailbox_key(row.id)
  for seq = 1, tonumber(row.sn or '0') do
    local fields = redis.call('HMGET', box, seq .. ':name', seq .. ':done', seq .. ':at')
    if fields[1] == name and not fields[2] and (not latest_ms or tonumber(fields[3] or '0') <= latest_ms) then
      return seq
    end
  end
  return nil
end

-- schedules: <base>sched:def (name -> definition JSON), :created and :tick (name -> timestamp) --------

local SCHED_DEF, SCHED_CREATED, SCHED_TICK = base .. 'sched:def', base .. 'sched:created', base .. 'sched:tick'

local function schedule(name)
  local def = redis.call('HGET', SCHED_DEF, name)
  if not def then return false end
  return {name, def, redis.call('HGET', SCHED_CREATED, name), redis.call('HGET', SCHED_TICK, name) or ''}
end

-- workers: <base>workers (id -> JSON of host, pid, pid_started), <base>beats (id by the server's time
-- of its last heartbeat, in ms) ---------------------------------------------------------------------

local function server_ms()
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end

-- The reply of an operation, once every key it changed is announced on its channel.
local function respond(reply)
  for _, key in ipairs(changed) do redis.call('PUBLISH', base .. 'ch:' .. key, origin) end
  return reply
end
