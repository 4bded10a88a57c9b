-- The run store's operations on one run's life: admission, claims, waits, ends, events (see runs.lua).

-- op: open
local LAYOUT = '1'

local function open()
  local kind = redis.call('TYPE', base .. 'layout').ok
  if kind ~= 'none' and kind ~= 'string' then return fail('layout_type', kind) end  -- not ours: another prefix's data
  local layout = redis.call('GET', base .. 'layout')
  if not layout then
    redis.call('SET', base .. 'layout', LAYOUT)
    layout = LAYOUT
  end
  return {layout, LAYOUT}
end

-- op: admit
-- The items of a string of netstrings ("<length in bytes>:<bytes>" each, back to back), in order: one
-- argument however many there are (a script's arguments are unpacked onto a bounded stack).
local function netstrings(text)
  local out, at = {}, 1
  while at <= #text do
    local colon = string.find(text, ':', at, true)
    local length = tonumber(string.sub(text, at, colon - 1))
    out[#out + 1] = string.sub(text, colon + 1, colon + length)
    at = colon + length + 1
  end
  return out
end

-- steps: netstrings of name, value, name, value... (the results a re-run takes over), or ''.
local function admit(id, wf, key, input, ca, ca_ms, owner, parent, start_iso, start_ms, wfor, carrier, first, rerun_of, steps)
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
  local row = {id = id, wf = wf, cams = ca_ms}
  local status = start_iso ~= '' and 'scheduled' or 'queued'
  local fields = {'id', id, 'wf', wf, 'st', status, 'att', 0, 'ca', ca, 'cams', ca_ms, 'n', 1, 'op', opid, 'ra', ca_ms}
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
  put('rr', rerun_of)
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
  compact(events_key(id))
  redis.call('ZADD', base .. 'runs', ca_ms, id)
  redis.call('ZADD', base .. 'runs:wf:' .. wf, ca_ms, id)
  if parent ~= '' then redis.call('ZADD', base .. 'runs:par:' .. parent, ca_ms, id) end
  if rerun_of ~= '' then redis.call('ZADD', base .. 'runs:rr:' .. rerun_of, ca_ms, id) end
  if steps ~= '' then
    local items = netstrings(steps)
    for i = 1, #items, 2 do put_step(base, id, items[i], items[i + 1]) end
  end
  index(row, status)
  if key ~= '' then redis.call('HSET', keys_key(wf), key, id) end
  mark(id)
  return {changed, 1}
end

-- op: claim
local function claim(id, owner, limit, now_iso, now_ms, head, mid_received)
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

-- op: requeue
-- interrupted '1': nothing failed, the execution was cut short; the next claim resumes the same attempt.
local function requeue(id, owner, held_by, interrupted, now_ms, head, mid_received)
  if remembered() then return {changed, record(id)} end
  local row = load(id)
  if not row or row.st ~= 'running' or (held_by ~= '' and row.own ~= held_by) then return {changed, false} end
  row.id = id
  if interrupted == '1' then
    set_status(row, 'queued', 'ra', now_ms, 'rs', '1', 'rc', tonumber(row.rc or '0') + 1)
  else
    set_status(row, 'queued', 'ra', now_ms)
    redis.call('HDEL', run_key(id), 'rs')
  end
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

-- op: suspend
local function suspend(id, owner, kind, name, wids, wfor, wake_iso, wake_ms, head, mid_received, mid_waiting, waiting_data)
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

-- op: finish
local function finish(id, status, ended_iso, ended_ms, result, err, only_from, held_by, now_ms, head, mid_received, mid_end, end_data)
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
  compact(events_key(id))
  redis.call('HDEL', run_key(id), 'wa', 'wams', 'wfor', 'wk', 'wn', 'wids', 'rs')
  redis.call('ZREM', DUE, id)
  redis.call('ZREM', ready_key(row.wf), id)
  redis.call('SREM', held_key(row.wf), id)
  redis.call('ZADD', ENDED, ended_ms, id)
  release_kept(id)
  set_status(row, status, 'ea', ended_iso)
  if result ~= '' then redis.call('HSET', run_key(id), 'res', result) end
  if err ~= '' then redis.call('HSET', run_key(id), 'err', err) end
  mark(id)
  if row.par then  -- wake the parent when it waits for its children and this was the last
    local parent = load(row.par)
    if parent and parent.st == 'waiting' and parent.wk == 'children'
        and string.find(' ' .. (parent.wids or '') .. ' ', ' ' .. id .. ' ', 1, true) and children_done(parent.wids) then
      parent.id = row.par
      awaken(parent, now_ms)
    end
  end
  return {changed, record(id)}
end

-- op: cancel
local function cancel(id)
  local row = load(id)
  if not row then return {changed, false} end
  if not FINISHED[row.st] and row.cr ~= '1' then
    redis.call('HSET', run_key(id), 'cr', '1')
    mark(id)
    mark(CANCELS)
  end
  return {changed, record(id)}
end

-- op: append
-- Events of several runs, each at its index: an event lands only at its run's next free position
-- of an unfinished run, so one sent twice, or after a gap, is dropped.
local function append(...)
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

-- op: steps
-- The run's step names in the order first saved (names stored by a version of Flue that kept no order
-- are in the hash only), and the hash's fields.
local function steps(id)
  local results, order = step_keys(base, id)
  return {redis.call('LRANGE', order, 0, -1), redis.call('HGETALL', results)}
end

-- op: read
local function read(id, after, limit)
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
