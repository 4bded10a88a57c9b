--[[ The Redis run store (flue_node_like/redis_store.py): every operation is one call of this script, so
each is atomic. The rules are those of flue_core/store.py (RunStore), which states them; this is the
same logic over Redis keys, which docs/redis.md lists.

  EVALSHA <sha> 1 <base>layout <base> <op> <origin> <opid> <op's arguments...>

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

local base, op, origin, opid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local LAYOUT = '1'
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
local function steps_key(id) return base .. 'steps:' .. id end
local function mailbox_key(id) return base .. 'sig:' .. id end
local function ready_key(wf) return base .. 'ready:' .. wf end
local function held_key(wf) return base .. 'held:' .. wf end
local function keys_key(wf) return base .. 'keys:' .. wf end
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

local function member(row) return row.ca .. ' ' .. row.id end

-- The list indexes: every run, by workflow, by status, by workflow and status, by parent. Sorted sets
-- of score 0 whose members "<created_at> <run_id>" sort in list order.
local function index(row, status)
  local m = member(row)
  redis.call('ZADD', base .. 'runs:st:' .. status, 0, m)
  redis.call('ZADD', base .. 'runs:wfst:' .. row.wf .. ':' .. status, 0, m)
end

local function unindex(row)
  local m = member(row)
  redis.call('ZREM', base .. 'runs:st:' .. row.st, m)
  redis.call('ZREM', base .. 'runs:wfst:' .. row.wf .. ':' .. row.st, m)
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

local function to_pool(row, ready_ms)
  redis.call('HSET', run_key(row.id), 'ra', ready_ms)
  redis.call('HDEL', run_key(row.id), 'own')
  redis.call('SREM', held_key(row.wf), row.id)
  redis.call('ZADD', ready_key(row.wf), ready_ms, row.id)
  row.own = nil
  mark(row.id)
  mark(READY)
end

-- A scheduled or waiting run becomes queued in the ready pool.
local function wake(row, ready_ms)
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

local function undelivered(row, name)
  local box = mailbox_key(row.id)
  for seq = 1, tonumber(row.sn or '0') do
    local fields = redis.call('HMGET', box, seq .. ':name', seq .. ':done')
    if fields[1] == name and not fields[2] then return seq end
  end
  return nil
end

-- operations ------------------------------------------------------------------------------------------

local ops = {}

function ops.open()
  local layout = redis.call('GET', base .. 'layout')
  if not layout then
    redis.call('SET', base .. 'layout', LAYOUT)
    layout = LAYOUT
  end
  return {layout, LAYOUT}
end

function ops.admit(id, wf, key, input, ca, ca_ms, owner, parent, start_iso, start_ms, wfor, carrier, first)
  if key ~= '' then
    local existing = redis.call('HGET', keys_key(wf), key)
    if existing then
      local op_of = redis.call('HGET', run_key(existing), 'op')
      if op_of == opid then return {changed, 1, record(existing)} end  -- this very call, sent twice
      if op_of then return {changed, 0, record(existing)} end
      redis.call('HDEL', keys_key(wf), key)  -- its run was pruned
    end
  end
  local op_of = redis.call('HGET', run_key(id), 'op')
  if op_of == opid then return {changed, 1, record(id)} end
  if op_of then return fail('run_id_conflict', id) end
  local row = {id = id, wf = wf, ca = ca}
  local status = start_iso ~= '' and 'scheduled' or 'queued'
  local fields = {'id', id, 'wf', wf, 'st', status, 'att', 0, 'ca', ca, 'n', 1, 'op', opid, 'ra', ca_ms}
  local function put(name, value)
    if value ~= '' then
      fields[#fields + 1] = name
      fields[#fields + 1] = value
    end
  end
  put('in', input)
  put('key', key)
  put('par', parent)
  put('car', carrier)
  if status == 'scheduled' then
    put('wa', start_iso)
    put('wams', start_ms)
    put('wfor', wfor)
    put('wk', 'start')
    redis.call('ZADD', DUE, start_ms, id)
    mark(READY)  -- a wake-up time was set: workers look at their timers again
  elseif owner ~= '' then
    put('own', owner)
    redis.call('SADD', held_key(wf), id)
  else
    redis.call('ZADD', ready_key(wf), ca_ms, id)
    mark(READY)
  end
  redis.call('HSET', run_key(id), unpack(fields))
  redis.call('XADD', events_key(id), '1-0', 'e', first)
  local m = ca .. ' ' .. id
  redis.call('ZADD', base .. 'runs', 0, m)
  redis.call('ZADD', base .. 'runs:wf:' .. wf, 0, m)
  if parent ~= '' then redis.call('ZADD', base .. 'runs:par:' .. parent, 0, m) end
  index(row, status)
  if key ~= '' then redis.call('HSET', keys_key(wf), key, id) end
  mark(id)
  return {changed, 1}
end

function ops.claim(id, owner, limit, now_iso, now_ms, head, mid_received)
  local row = load(id)
  if not row then return {changed, false} end
  if row.st == 'running' and row.own == owner and row.cop == opid then  -- this very call, sent twice
    return {changed, record(id), row.n, row.crs or '0'}
  end
  if row.st ~= 'queued' or row.own ~= owner then return {changed, false} end
  row.id = id
  if limit ~= '' and redis.call('ZCARD', base .. 'runs:wfst:' .. row.wf .. ':running') >= tonumber(limit) then
    to_pool(row, row.ra)  -- back to the pool, in its place: a worker takes it once there is room
    return {changed, false}
  end
  announce(row, head, mid_received)
  local resumed = row.rs or '0'
  local attempt = tonumber(row.att) + (resumed == '1' and 0 or 1)
  set_status(row, 'running', 'att', attempt, 'sa', row.sa or now_iso, 'sams', row.sams or now_ms, 'cop', opid, 'crs', resumed)
  redis.call('HDEL', run_key(id), 'rs')
  mark(id)
  return {changed, record(id), row.n, resumed}
end

function ops.requeue(id, owner, held_by, now_ms, head, mid_received)
  if remembered() then return {changed, record(id)} end
  local row = load(id)
  if not row or row.st ~= 'running' or (held_by ~= '' and row.own ~= held_by) then return {changed, false} end
  row.id = id
  set_status(row, 'queued', 'ra', now_ms)
  redis.call('HDEL', run_key(id), 'rs')
  announce(row, head, mid_received)
  if owner == '' then
    to_pool(row, now_ms)
  else
    redis.call('HSET', run_key(id), 'own', owner)
    redis.call('SADD', held_key(row.wf), id)
  end
  mark(id)
  remember('1')
  return {changed, record(id)}
end

function ops.suspend(id, owner, kind, name, wids, wfor, wake_iso, wake_ms, head, mid_received, mid_waiting, waiting_data)
  local row = load(id)
  if not row then return {changed, false} end
  if row.st == 'waiting' and row.sop == opid then return {changed, 1, row.n, record(id)} end
  if row.st ~= 'running' or row.own ~= owner then return {changed, false} end
  row.id = id
  announce(row, head, mid_received)
  mark(id)
  local satisfied = (kind == 'signal' and undelivered(row, name)) or (kind == 'children' and children_done(wids))
  if row.cr == '1' or satisfied then return {changed, 0, row.n, record(id)} end
  redis.call('HDEL', run_key(id), 'own')
  redis.call('SREM', held_key(row.wf), id)
  set_status(row, 'waiting', 'wfor', wfor, 'wk', kind, 'rs', kind ~= 'retry' and '1' or '0', 'sop', opid)
  if name ~= '' then redis.call('HSET', run_key(id), 'wn', name) end
  if wids ~= '' then redis.call('HSET', run_key(id), 'wids', wids) end
  if wake_iso ~= '' then
    redis.call('HSET', run_key(id), 'wa', wake_iso, 'wams', wake_ms)
    redis.call('ZADD', DUE, wake_ms, id)
  end
  write_event(row, head, mid_waiting, waiting_data)
  mark(READY)
  return {changed, 1, row.n, record(id)}
end

function ops.finish(id, status, ended_iso, ended_ms, result, err, only_from, held_by, now_ms, head, mid_received, mid_end, end_data)
  local row = load(id)
  if not row then return {changed, false} end
  row.id = id
  if FINISHED[row.st] or (held_by ~= '' and row.own ~= held_by)
      or (only_from ~= '*' and not string.find(' ' .. only_from .. ' ', ' ' .. row.st .. ' ', 1, true)) then
    return {changed, record(id)}
  end
  announce(row, head, mid_received)
  local duration = 'null'
  if row.sams then duration = tostring(tonumber(ended_ms) - tonumber(row.sams)) end
  write_event(row, head, mid_end, end_data .. duration .. '}')
  redis.call('HDEL', run_key(id), 'wa', 'wams', 'wfor', 'wk', 'wn', 'wids', 'rs')
  redis.call('ZREM', DUE, id)
  redis.call('ZREM', ready_key(row.wf), id)
  redis.call('SREM', held_key(row.wf), id)
  redis.call('ZADD', ENDED, ended_ms, id)
  set_status(row, status, 'ea', ended_iso)
  if result ~= '' then redis.call('HSET', run_key(id), 'res', result) end
  if err ~= '' then redis.call('HSET', run_key(id), 'err', err) end
  mark(id)
  if row.par then  -- wake the parent when it waits for its children and this was the last
    local parent = load(row.par)
    if parent and parent.st == 'waiting' and parent.wk == 'children'
        and string.find(' ' .. (parent.wids or '') .. ' ', ' ' .. id .. ' ', 1, true) and children_done(parent.wids) then
      parent.id = row.par
      wake(parent, now_ms)
    end
  end
  return {changed, record(id)}
end

function ops.cancel(id)
  local row = load(id)
  if not row then return {changed, false} end
  if not FINISHED[row.st] and row.cr ~= '1' then
    redis.call('HSET', run_key(id), 'cr', '1')
    mark(id)
    mark(CANCELS)
  end
  return {changed, record(id)}
end

-- Take up to limit runs of the ready pool, oldest first, within each workflow's cap.
function ops.take(owner, limit, count, ...)
  local rest = {...}
  limit = tonumber(limit)
  local caps, order = {}, {}
  for i = 1, tonumber(count) * 2, 2 do
    caps[rest[i]] = rest[i + 1]
    order[#order + 1] = rest[i]
  end
  local kept = remembered()
  local out = {}
  if kept then
    for id in string.gmatch(kept, '%S+') do
      local row = load(id)
      if row and row.st == 'queued' and row.own == owner then out[#out + 1] = record(id) end
    end
    return {changed, out}
  end
  local room = {}
  for _, wf in ipairs(order) do
    room[wf] = caps[wf] == '' and limit or tonumber(caps[wf]) - redis.call('SCARD', held_key(wf))
  end
  local candidates = {}
  local only = rest[tonumber(count) * 2 + 1]
  if only == '1' then
    for i = tonumber(count) * 2 + 2, #rest do
      local fields = redis.call('HMGET', run_key(rest[i]), 'st', 'own', 'wf', 'ra')
      if fields[1] == 'queued' and not fields[2] and room[fields[3]] then
        candidates[#candidates + 1] = {tonumber(fields[4]), rest[i], fields[3]}
      end
    end
  else
    for _, wf in ipairs(order) do
      if room[wf] > 0 then
        local entries = redis.call('ZRANGE', ready_key(wf), 0, math.min(room[wf], limit) - 1, 'WITHSCORES')
        for i = 1, #entries, 2 do candidates[#candidates + 1] = {tonumber(entries[i + 1]), entries[i], wf} end
      end
    end
  end
  table.sort(candidates, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
  local taken = {}
  for _, candidate in ipairs(candidates) do
    if #taken >= limit then break end
    local id, wf = candidate[2], candidate[3]
    if room[wf] > 0 then
      room[wf] = room[wf] - 1
      redis.call('HSET', run_key(id), 'own', owner)
      redis.call('ZREM', ready_key(wf), id)
      redis.call('SADD', held_key(wf), id)
      taken[#taken + 1] = id
      out[#out + 1] = record(id)
    end
  end
  if #taken > 0 then remember(table.concat(taken, ' ')) end
  return {changed, out}
end

function ops.wake(now_ms, limit)
  local due = redis.call('ZRANGEBYSCORE', DUE, '-inf', now_ms, 'WITHSCORES', 'LIMIT', 0, tonumber(limit))
  local moved = 0
  for i = 1, #due, 2 do
    local row = load(due[i])
    redis.call('ZREM', DUE, due[i])
    if row and (row.st == 'scheduled' or row.st == 'waiting') then
      row.id = due[i]
      wake(row, due[i + 1])
      moved = moved + 1
    end
  end
  return {changed, moved}
end

-- Events of several runs, each at its index: an event lands only at its run's next free position
-- of an unfinished run, so one sent twice, or after a gap, is dropped.
function ops.append(...)
  local args = {...}
  local i = 1
  while i <= #args do
    local id, count = args[i], tonumber(args[i + 1])
    local fields = redis.call('HMGET', run_key(id), 'st', 'n')
    local status, n = fields[1], tonumber(fields[2])
    local added = false
    for j = i + 2, i + 1 + count * 2, 2 do
      if status and not FINISHED[status] and tonumber(args[j]) == n then
        redis.call('XADD', events_key(id), (n + 1) .. '-0', 'e', args[j + 1])
        n = n + 1
        added = true
      end
    end
    if added then
      redis.call('HSET', run_key(id), 'n', n)
      mark(id)
    end
    i = i + 2 + count * 2
  end
  return {changed}
end

function ops.read(id, after, limit)
  local fields = redis.call('HMGET', run_key(id), 'st', 'n')
  if not fields[1] then return false end
  local tail = tonumber(fields[2]) - 1
  local start = after == '' and tail or math.max(tonumber(after), -1)
  local out = {tail, FINISHED[fields[1]] and 1 or 0, start + 1}
  if tonumber(limit) > 0 and start < tail then
    for _, entry in ipairs(redis.call('XRANGE', events_key(id), (start + 2) .. '-0', '+', 'COUNT', tonumber(limit))) do
      out[#out + 1] = entry[2][2]
    end
  end
  return out
end

-- Newest first, strictly before the member "after", through the narrowest index the filters allow.
function ops.list(limit, after, wf, status, parent)
  limit = tonumber(limit)
  local key
  if parent ~= '' then key = base .. 'runs:par:' .. parent
  elseif wf ~= '' and status ~= '' then key = base .. 'runs:wfst:' .. wf .. ':' .. status
  elseif wf ~= '' then key = base .. 'runs:wf:' .. wf
  elseif status ~= '' then key = base .. 'runs:st:' .. status
  else key = base .. 'runs' end
  local check = parent ~= '' and (wf ~= '' or status ~= '')
  local out = {}
  local upper = after == '' and '+' or '(' .. after
  while #out < limit do
    local chunk = redis.call('ZREVRANGEBYLEX', key, upper, '-', 'LIMIT', 0, math.max(limit - #out, 64))
    if #chunk == 0 then break end
    for _, m in ipairs(chunk) do
      local id = string.sub(m, string.find(m, ' ', 1, true) + 1)
      local keep = true
      if check then
        local fields = redis.call('HMGET', run_key(id), 'wf', 'st')
        keep = (wf == '' or fields[1] == wf) and (status == '' or fields[2] == status)
      end
      if keep then
        local flat = record(id)
        if #flat > 0 then out[#out + 1] = flat end
        if #out >= limit then break end
      end
    end
    upper = '(' .. chunk[#chunk]
  end
  return out
end

local function delete_run(id, row)
  local m = row.ca .. ' ' .. id
  redis.call('DEL', run_key(id), events_key(id), steps_key(id), mailbox_key(id))
  redis.call('ZREM', base .. 'runs', m)
  redis.call('ZREM', base .. 'runs:wf:' .. row.wf, m)
  redis.call('ZREM', base .. 'runs:st:' .. row.st, m)
  redis.call('ZREM', base .. 'runs:wfst:' .. row.wf .. ':' .. row.st, m)
  if row.par then redis.call('ZREM', base .. 'runs:par:' .. row.par, m) end
  if row.key and redis.call('HGET', keys_key(row.wf), row.key) == id then redis.call('HDEL', keys_key(row.wf), row.key) end
  redis.call('ZREM', ENDED, id)
end

function ops.prune(cutoff_ms, limit)
  local doomed = redis.call('ZRANGEBYSCORE', ENDED, '-inf', '(' .. cutoff_ms, 'LIMIT', 0, tonumber(limit))
  local count = 0
  for _, id in ipairs(doomed) do
    local row = load(id)
    if row and FINISHED[row.st] then
      delete_run(id, row)
      count = count + 1
    elseif not row then
      redis.call('ZREM', ENDED, id)
    end
  end
  return {changed, count}
end

-- signals ---------------------------------------------------------------------------------------------

-- The mailbox <base>sig:<id> is a hash: <seq>:id, :name, :data, :ann (signal_received data), :step (the
-- delivered step's value), :dlv (signal_delivered data), :done once delivered; k:<key> -> seq.
local function signal_reply(id, seq, created)
  local box = mailbox_key(id)
  local fields = redis.call('HMGET', box, seq .. ':id', seq .. ':name', seq .. ':data')
  return {changed, created, fields[1], fields[2], fields[3], record(id)}
end

function ops.signal(id, sid, name, key, data, ann, step, dlv, sent_ms, head, mid_received)
  local row = load(id)
  if not row then return fail('run_not_found', id) end
  local kept = remembered()
  if kept then return signal_reply(id, kept, 1) end
  if FINISHED[row.st] then return fail('run_finished', id, row.st) end
  row.id = id
  local box = mailbox_key(id)
  if key ~= '' then
    local seq = redis.call('HGET', box, 'k:' .. key)
    if seq then return signal_reply(id, seq, 0) end
  end
  local seq = tonumber(row.sn or '0') + 1
  redis.call('HSET', box, seq .. ':id', sid, seq .. ':name', name, seq .. ':data', data, seq .. ':ann', ann,
    seq .. ':step', step, seq .. ':dlv', dlv)
  if key ~= '' then redis.call('HSET', box, 'k:' .. key, seq) end
  row.sn = seq
  redis.call('HSET', run_key(id), 'sn', seq)
  if row.st ~= 'running' then announce(row, head, mid_received) end
  if row.st == 'waiting' and row.wk == 'signal' and row.wn == name then wake(row, sent_ms) end
  mark(id)
  remember(tostring(seq))
  return signal_reply(id, seq, 1)
end

function ops.take_signal(id, owner, name, step, head, mid_received, mid_delivered)
  local row = load(id)
  local kept = remembered()
  if kept then
    local sid, data = '', ''
    if kept ~= '0' then
      local fields = redis.call('HMGET', mailbox_key(id), kept .. ':id', kept .. ':data')
      sid, data = fields[1], fields[2]
    end
    return {changed, row and row.n or 0, sid, data}
  end
  if not row or row.st ~= 'running' or row.own ~= owner then return {changed, false} end
  row.id = id
  announce(row, head, mid_received)
  mark(id)
  local seq = undelivered(row, name)
  if not seq then
    remember('0')
    return {changed, row.n, '', ''}
  end
  local box = mailbox_key(id)
  local fields = redis.call('HMGET', box, seq .. ':id', seq .. ':data', seq .. ':step', seq .. ':dlv')
  redis.call('HSET', box, seq .. ':done', '1')
  redis.call('HSETNX', steps_key(id), step, fields[3])
  write_event(row, head, mid_delivered, fields[4])
  remember(tostring(seq))
  return {changed, row.n, fields[1], fields[2]}
end

-- schedules: <base>sched:def (name -> definition JSON), :created and :tick (name -> timestamp) --------

local SCHED_DEF, SCHED_CREATED, SCHED_TICK = base .. 'sched:def', base .. 'sched:created', base .. 'sched:tick'

local function schedule(name)
  local def = redis.call('HGET', SCHED_DEF, name)
  if not def then return false end
  return {name, def, redis.call('HGET', SCHED_CREATED, name), redis.call('HGET', SCHED_TICK, name) or ''}
end

function ops.put_schedule(name, def, created, tick, replace)
  local existing = schedule(name)
  if existing and replace ~= '1' then return {changed, 0, existing} end
  redis.call('HSET', SCHED_DEF, name, def)
  if not existing then
    redis.call('HSET', SCHED_CREATED, name, created)
    if tick ~= '' then redis.call('HSET', SCHED_TICK, name, tick) end
  end
  mark(SCHEDULES)
  return {changed, existing and 0 or 1, schedule(name)}
end

function ops.schedules(name)
  if name ~= '' then return {schedule(name)} end
  local out = {}
  for _, each in ipairs(redis.call('HKEYS', SCHED_DEF)) do out[#out + 1] = schedule(each) end
  return out
end

function ops.delete_schedule(name)
  local found = redis.call('HDEL', SCHED_DEF, name)
  redis.call('HDEL', SCHED_CREATED, name)
  redis.call('HDEL', SCHED_TICK, name)
  if found > 0 then mark(SCHEDULES) end
  return {changed, found}
end

function ops.advance(name, previous, tick)
  if remembered() then return {changed, 1} end
  if redis.call('HEXISTS', SCHED_DEF, name) == 0 or (redis.call('HGET', SCHED_TICK, name) or '') ~= previous then
    return {changed, 0}
  end
  redis.call('HSET', SCHED_TICK, name, tick)
  remember('1')
  return {changed, 1}
end

-- workers: <base>workers (id -> JSON of host, pid, pid_started), <base>beats (id by the server's time
-- of its last heartbeat, in ms) ---------------------------------------------------------------------

local function server_ms()
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end

-- age_ms: how old the caller says its heartbeat is, by its own clock (0 for a fresh one).
function ops.beat(worker, info, age_ms, ...)
  redis.call('HSET', WORKERS, worker, info)
  redis.call('ZADD', BEATS, server_ms() - tonumber(age_ms), worker)
  local stop = {}
  for _, id in ipairs({...}) do
    local fields = redis.call('HMGET', run_key(id), 'own', 'cr', 'st')
    if fields[3] and (fields[1] ~= worker or fields[2] == '1' or FINISHED[fields[3]]) then stop[#stop + 1] = id end
  end
  return {changed, stop}
end

function ops.workers()
  local out = {server_ms()}
  local flat = redis.call('HGETALL', WORKERS)
  for i = 1, #flat, 2 do
    out[#out + 1] = flat[i]
    out[#out + 1] = flat[i + 1]
    out[#out + 1] = redis.call('ZSCORE', BEATS, flat[i]) or '0'
  end
  return out
end

function ops.retire(worker)
  redis.call('HDEL', WORKERS, worker)
  redis.call('ZREM', BEATS, worker)
  return {changed}
end

function ops.adopt(owner, count, ...)
  local rest = {...}
  local kept = remembered()
  local out = {}
  if kept then
    for id in string.gmatch(kept, '%S+') do out[#out + 1] = record(id) end
    return {changed, out}
  end
  for i = 1, tonumber(count) do
    redis.call('HDEL', WORKERS, rest[i])
    redis.call('ZREM', BEATS, rest[i])
  end
  local adopted = {}
  for i = tonumber(count) + 1, #rest do
    for _, id in ipairs(redis.call('SMEMBERS', held_key(rest[i]))) do
      local fields = redis.call('HMGET', run_key(id), 'own', 'st')
      if fields[1] and (fields[2] == 'queued' or fields[2] == 'running') and redis.call('HEXISTS', WORKERS, fields[1]) == 0 then
        redis.call('HSET', run_key(id), 'own', owner)
        adopted[#adopted + 1] = id
        out[#out + 1] = record(id)
        mark(id)
      end
    end
  end
  if #adopted > 0 then remember(table.concat(adopted, ' ')) end
  return {changed, out}
end

-- dispatch --------------------------------------------------------------------------------------------

local handler = ops[op]
if not handler then return fail('unknown_operation', op) end
local reply = handler(unpack(ARGV, 5))
for _, key in ipairs(changed) do redis.call('PUBLISH', base .. 'ch:' .. key, origin) end
return reply
