-- The run store's operations on the ready pool, the due-time index and signal mailboxes (see runs.lua).

-- op: take
-- Take up to limit runs of the ready pool, oldest first, within each workflow's cap.
local function take(owner, limit, count, ...)
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

-- op: wake
local function wake(now_ms, limit)
  local due = redis.call('ZRANGEBYSCORE', DUE, '-inf', now_ms, 'WITHSCORES', 'LIMIT', 0, tonumber(limit))
  local moved = 0
  for i = 1, #due, 2 do
    local row = load(due[i])
    redis.call('ZREM', DUE, due[i])
    if row and (row.st == 'scheduled' or row.st == 'waiting') then
      row.id = due[i]
      awaken(row, due[i + 1])
      moved = moved + 1
    end
  end
  return {changed, moved}
end

-- op: signal
-- The mailbox <base>sig:<id> is a hash: <seq>:id, :name, :data, :ann (signal_received data), :step (the
-- delivered step's value), :dlv (signal_delivered data), :done once delivered; k:<key> -> seq.
local function signal_reply(id, seq, created)
  local box = mailbox_key(id)
  local fields = redis.call('HMGET', box, seq .. ':id', seq .. ':name', seq .. ':data')
  return {changed, created, fields[1], fields[2], fields[3], record(id)}
end

local function signal(id, sid, name, key, data, ann, step, dlv, sent_ms, head, mid_received)
  local row = load(id)
  if not row then return fail('run_not_found', id) end
  local kept = remembered()
  if kept then return signal_reply(id, kept, 1) end
  row.id = id
  local box = mailbox_key(id)
  if key ~= '' then  -- before the run's end: a retried send gets the first answer, ended or not
    local seq = redis.call('HGET', box, 'k:' .. key)
    if seq then return signal_reply(id, seq, 0) end
  end
  if FINISHED[row.st] then return fail('run_finished', id, row.st) end
  local seq = tonumber(row.sn or '0') + 1
  redis.call('HSET', box, seq .. ':id', sid, seq .. ':name', name, seq .. ':data', data, seq .. ':ann', ann,
    seq .. ':step', step, seq .. ':dlv', dlv, seq .. ':at', sent_ms)
  if key ~= '' then redis.call('HSET', box, 'k:' .. key, seq) end
  row.sn = seq
  redis.call('HSET', run_key(id), 'sn', seq)
  if row.st ~= 'running' then announce(row, head, mid_received) end
  if row.st == 'waiting' and row.wk == 'signal' and row.wn == name then awaken(row, sent_ms) end
  mark(id)
  remember(tostring(seq))
  return signal_reply(id, seq, 1)
end

-- op: take_signal
-- latest_ms: '' or the wait's deadline, so that a wait whose time ran out takes no later signal.
local function take_signal(id, owner, name, step, head, mid_received, mid_delivered, latest_ms)
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
  local seq = undelivered(row, name, tonumber(latest_ms))
  if not seq then
    remember('0')
    return {changed, row.n, '', ''}
  end
  local box = mailbox_key(id)
  local fields = redis.call('HMGET', box, seq .. ':id', seq .. ':data', seq .. ':step', seq .. ':dlv')
  redis.call('HSET', box, seq .. ':done', '1')
  put_step(base, id, step, fields[3])
  write_event(row, head, mid_delivered, fields[4])
  remember(tostring(seq))
  return {changed, row.n, fields[1], fields[2]}
end
