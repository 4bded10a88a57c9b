-- The run store's operations on the due-time index and signal mailboxes (see runs.lua; taking from the
-- ready pool is in runs_flow.lua).

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
