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

-- A start with a debounce key folds into the run of that key still waiting for its window's end, if
-- any and not asked to cancel (a start then makes a new run, which becomes the key's): that run takes
-- the start's input, wake-up time, priority and keys (its list indexes by key move with them; waiting,
-- it is in no pool, held or started set), and a run_debounced event says so. pri, ck, rk: as admit's.
-- The event's frame: head_a .. <run id> .. head_b .. <index> .. mid .. data .. '}'.
local function fold(wf, dk, input, start_iso, start_ms, pri, ck, rk, head_a, head_b, mid, data)
  local kept = remembered()
  if kept then return {changed, 0, record(kept)} end  -- this very call, sent twice
  local pending = redis.call('HGET', debounce_key(wf), dk)
  local row = pending and load(pending)
  if row and row.op == opid then return {changed, 1, record(pending)} end  -- it made this run, sent twice
  if not row or row.st ~= 'scheduled' or row.wk ~= 'debounce' or row.cr == '1' then return nil end
  row.id = pending
  redis.call('HSET', run_key(pending), 'wa', start_iso, 'wams', start_ms)
  local values = {pri = pri ~= '' and pri or nil, ck = ck ~= '' and string.sub(ck, 2) or nil, rk = rk ~= '' and string.sub(rk, 2) or nil}
  for _, field in ipairs({'pri', 'ck', 'rk'}) do
    local old, value = row[field], values[field]
    if old ~= value then
      local index_of = field ~= 'pri' and base .. 'runs:' .. field .. ':'
      if index_of and old then redis.call('ZREM', index_of .. old, pending) end
      if value then
        redis.call('HSET', run_key(pending), field, value)
        if index_of then redis.call('ZADD', index_of .. value, row.cams, pending) end
      else
        redis.call('HDEL', run_key(pending), field)
      end
    end
  end
  if input == '' then
    redis.call('HDEL', run_key(pending), 'in')
  else
    redis.call('HSET', run_key(pending), 'in', input)
  end
  redis.call('ZADD', DUE, start_ms, pending)
  write_event(row, head_a .. pending .. head_b, mid, data)
  mark(READY)  -- its wake-up time moved
  remember(pending)
  return {changed, 0, record(pending)}
end

-- steps: netstrings of name, value, name, value... (the results a re-run takes over), or ''.
-- ck, rk, dk: '' for none, else '=' and the key's value; pri: '' for 0. fold_*: see fold ('' without dk).
local function admit(id, wf, key, input, ca, ca_ms, owner, parent, start_iso, start_ms, wfor, carrier, first, rerun_of, steps,
                     pri, ck, rk, dk, fold_head_a, fold_head_b, fold_mid, fold_data)
  if key ~= '' then
    local existing = redis.call('HGET', keys_key(wf), key)
    if existing then
      local op_of = redis.call('HGET', run_key(existing), 'op')
      if op_of == opid then return {changed, 1, record(existing)} end  -- this very call, sent twice
      if op_of then return {changed, 0, record(existing)} end
      redis.call('HDEL', keys_key(wf), key)  -- its run was pruned
    end
  end
  local debounced = dk ~= ''
  if debounced then dk = string.sub(dk, 2) end
  if debounced and start_iso ~= '' then
    local folded = fold(wf, dk, input, start_iso, start_ms, pri, ck, rk, fold_head_a, fold_head_b, fold_mid, fold_data)
    if folded then return folded end
  end
  local op_of = redis.call('HGET', run_key(id), 'op')
  if op_of == opid then return {changed, 1, record(id)} end
  if op_of then return fail('run_id_conflict', id) end
  local row = {id = id, wf = wf, cams = ca_ms}
  if pri ~= '' then row.pri = pri end
  if ck ~= '' then row.ck = string.sub(ck, 2) end
  if rk ~= '' then row.rk = string.sub(rk, 2) end
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
  if pri ~= '' or ck ~= '' or rk ~= '' or debounced then
    put('pri', pri)
    for _, pair in ipairs({{'ck', row.ck}, {'rk', row.rk}, {'dk', debounced and dk}}) do
      if pair[2] then
        fields[#fields + 1] = pair[1]
        fields[#fields + 1] = pair[2]
      end
    end
    if row.ck then redis.call('ZADD', base .. 'runs:ck:' .. row.ck, ca_ms, id) end
    if row.rk then redis.call('ZADD', base .. 'runs:rk:' .. row.rk, ca_ms, id) end
  end
  if status == 'scheduled' then
    put('wa', start_iso)
    put('wams', start_ms)
    put('wfor', wfor)
    put('wk', debounced and 'debounce' or 'start')
    redis.call('ZADD', DUE, start_ms, id)
    if debounced then redis.call('HSET', debounce_key(wf), dk, id) end
    mark(READY)  -- a wake-up time was set: workers look at their timers again
  elseif owner ~= '' then
    put('own', owner)
    hold(row)
  else
    pool_add(row, ca_ms)
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
-- The runs of row's workflow running with its concurrency key (runs without one count together).
local function running_alike(row)
  local function running(ids)
    local n = 0
    for _, each in ipairs(ids) do
      if redis.call('HGET', run_key(each), 'st') == 'running' then n = n + 1 end
    end
    return n
  end
  if row.ck then return running(redis.call('SMEMBERS', busy_key(row.wf, row.ck))) end
  local all = redis.call('ZCARD', base .. 'runs:wfst:' .. row.wf .. ':running')
  if all == 0 then return 0 end
  return all - running(redis.call('SMEMBERS', keyed_key(row.wf)))
end

local function claim(id, owner, limit, now_iso, now_ms, head, mid_received)
  local row = load(id)
  if not row then return {changed, false} end
  if row.st == 'running' and row.own == owner and row.cop == opid then  -- this very call, sent twice
    return {changed, record(id), row.n, row.crs or '0'}
  end
  if row.st ~= 'queued' or row.own ~= owner then return {changed, false} end
  row.id = id
  if limit ~= '' and running_alike(row) >= tonumber(limit) then
    to_pool(row, row.ra)  -- back to the pool, in its place: a worker takes it once there is room
    return {changed, false}
  end
  announce(row, head, mid_received)
  local resumed = row.rs or '0'
  local attempt = tonumber(row.att) + (resumed == '1' and 0 or 1)
  set_status(row, 'running', 'att', attempt, 'sa', row.sa or now_iso, 'sams', row.sams or now_ms, 'cop', opid, 'crs', resumed)
  redis.call('HDEL', run_key(id), 'rs')
  if not row.sams then  -- its first start, in the list indexes of starts (see list)
    redis.call('ZADD', base .. 'runs:sa', now_ms, id)
    redis.call('ZADD', base .. 'runs:sa:' .. row.wf, now_ms, id)
    redis.call('SET', base .. 'sa:from', now_ms, 'NX')
  end
  if row.rt then  -- its first start: counted against its rate from now on, at its start time
    add_start(row.wf, row.rk, now_ms, id, redis.call('HGET', RATED, row.wf))
    redis.call('HDEL', run_key(id), 'rt')
  elseif not row.sams then  -- a first start by another way than a rate-limited take counts as well
    local per = redis.call('HGET', RATED, row.wf)
    if per then
      redis.call('ZREMRANGEBYSCORE', starts_key(row.wf, row.rk), '-inf', tonumber(now_ms) - tonumber(per))
      add_start(row.wf, row.rk, now_ms, id, per)
    end
  end
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
    hold(row)
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
  unhold(row)
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
  if row.own then
    unhold(row)
  elseif row.st == 'queued' then
    pool_remove(row)
  end
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
