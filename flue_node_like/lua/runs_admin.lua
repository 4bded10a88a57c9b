-- The run store's operations on lists, retention, schedules and workers (see runs.lua).

-- op: list
-- Up to count ids of key strictly before (score, id) in list order (newest first), and the last one's score.
local function before(key, score, id, count)
  local out, last = {}, score
  if id ~= '' then
    local same = redis.call('ZRANGEBYSCORE', key, score, score)
    for i = #same, 1, -1 do
      if same[i] < id and #out < count then out[#out + 1] = same[i] end
    end
  end
  if #out < count then
    local upper = id == '' and score or '(' .. score
    local lower = redis.call('ZREVRANGEBYSCORE', key, upper, '-inf', 'WITHSCORES', 'LIMIT', 0, count - #out)
    for i = 1, #lower, 2 do
      out[#out + 1] = lower[i]
      last = lower[i + 1]
    end
  end
  return out, last
end

-- The filters of a list, and whether a run's fields (HMGET of FIELDS) pass them. ck, rk: false for any.
local FIELDS = {'wf', 'st', 'rr', 'par', 'ck', 'rk', 'sams', 'cams'}
local function passes(f, wf, status, parent, rerun_of, ck, rk, started_after)
  return (wf == '' or f[1] == wf) and (status == '' or f[2] == status)
    and (rerun_of == '' or f[3] == rerun_of) and (parent == '' or f[4] == parent)
    and (not ck or f[5] == ck) and (not rk or f[6] == rk)
    and (not started_after or (f[7] and tonumber(f[7]) > started_after))
end

-- Newest first, strictly after the cursor (after_ms, after_id), through the index that reads the
-- fewest runs: one that covers every filter reads just the page (the first of them in this order:
-- parent, re-run, keys, workflow and status, workflow, status); else the smallest (ZCARD: running
-- runs are few, a key's runs may be every run of a workflow), its runs checked one by one against the
-- filters it does not cover. With started_after, the runs started since then, from runs:sa[:<wf>]
-- (first starts by start time) when that is smaller still, sorted into list order: it holds every
-- start since sa:from (the first start this version of the scripts made), so only a started_after
-- from then on may use it. ck, rk: '' for any, else '=' and the key's value; started_after: '' or ms.
local function list(limit, after_ms, after_id, wf, status, parent, rerun_of, ck, rk, started_after)
  limit = tonumber(limit)
  ck, rk = ck ~= '' and string.sub(ck, 2), rk ~= '' and string.sub(rk, 2)
  started_after = tonumber(started_after)
  local filters = (parent ~= '' and 1 or 0) + (rerun_of ~= '' and 1 or 0) + (ck and 1 or 0) + (rk and 1 or 0)
    + (wf ~= '' and 1 or 0) + (status ~= '' and 1 or 0) + (started_after and 1 or 0)
  local indexes = {}  -- {key, filters it covers}
  if parent ~= '' then indexes[#indexes + 1] = {base .. 'runs:par:' .. parent, 1} end
  if rerun_of ~= '' then indexes[#indexes + 1] = {base .. 'runs:rr:' .. rerun_of, 1} end
  if ck then indexes[#indexes + 1] = {base .. 'runs:ck:' .. ck, 1} end
  if rk then indexes[#indexes + 1] = {base .. 'runs:rk:' .. rk, 1} end
  if wf ~= '' and status ~= '' then indexes[#indexes + 1] = {base .. 'runs:wfst:' .. wf .. ':' .. status, 2} end
  if wf ~= '' then indexes[#indexes + 1] = {base .. 'runs:wf:' .. wf, 1} end
  if status ~= '' then indexes[#indexes + 1] = {base .. 'runs:st:' .. status, 1} end
  indexes[#indexes + 1] = {base .. 'runs', 0}
  local key, check, size
  for _, each in ipairs(indexes) do
    if each[2] == filters then  -- it covers them all: the page is its first runs
      key, check = each[1], false
      break
    end
    local n = redis.call('ZCARD', each[1])
    if not size or n < size then key, check, size = each[1], true, n end
  end

  local function before_cursor(score, id)
    if after_ms == '' then return true end
    local at = tonumber(after_ms)
    return score < at or (score == at and (after_id == '' or id < after_id))
  end
  local out = {}
  if check and started_after then
    local from = tonumber(redis.call('GET', base .. 'sa:from'))
    local starts = base .. 'runs:sa' .. (wf ~= '' and ':' .. wf or '')
    if from and started_after >= from and redis.call('ZCOUNT', starts, '(' .. started_after, '+inf') < size then
      local found = {}
      for _, each in ipairs(redis.call('ZRANGEBYSCORE', starts, '(' .. started_after, '+inf')) do
        local fields = redis.call('HMGET', run_key(each), unpack(FIELDS))
        if fields[8] and passes(fields, wf, status, parent, rerun_of, ck, rk, started_after)
            and before_cursor(tonumber(fields[8]), each) then
          found[#found + 1] = {tonumber(fields[8]), each}
        end
      end
      table.sort(found, function(a, b) return a[1] > b[1] or (a[1] == b[1] and a[2] > b[2]) end)
      for i = 1, math.min(limit, #found) do out[#out + 1] = record(found[i][2]) end
      return out
    end
  end

  local score, id = after_ms == '' and '+inf' or after_ms, after_id
  while #out < limit do
    local chunk, last = before(key, score, id, math.max(limit - #out, 64))
    if #chunk == 0 then break end
    for _, each in ipairs(chunk) do
      local keep = not check or passes(redis.call('HMGET', run_key(each), unpack(FIELDS)), wf, status, parent, rerun_of, ck, rk, started_after)
      if keep then
        local flat = record(each)
        if #flat > 0 then out[#out + 1] = flat end
        if #out >= limit then break end
      end
    end
    score, id = last, chunk[#chunk]
  end
  return out
end

-- op: prune
local function delete_run(id, row)
  redis.call('DEL', run_key(id), events_key(id), mailbox_key(id), step_keys(base, id))
  redis.call('ZREM', base .. 'runs', id)
  redis.call('ZREM', base .. 'runs:wf:' .. row.wf, id)
  unindex(row)
  if row.par then redis.call('ZREM', base .. 'runs:par:' .. row.par, id) end
  if row.rr then redis.call('ZREM', base .. 'runs:rr:' .. row.rr, id) end
  if row.ck then redis.call('ZREM', base .. 'runs:ck:' .. row.ck, id) end
  if row.rk then redis.call('ZREM', base .. 'runs:rk:' .. row.rk, id) end
  if row.sams then
    redis.call('ZREM', base .. 'runs:sa', id)
    redis.call('ZREM', base .. 'runs:sa:' .. row.wf, id)
  end
  if row.dk and redis.call('HGET', debounce_key(row.wf), row.dk) == id then redis.call('HDEL', debounce_key(row.wf), row.dk) end
  if row.key and redis.call('HGET', keys_key(row.wf), row.key) == id then redis.call('HDEL', keys_key(row.wf), row.key) end
  redis.call('ZREM', ENDED, id)
  release_kept(id)
end

-- A finished child whose parent has not ended is not deleted, for the parent may still wait for its
-- result: it moves from ENDED to the parent's kept set (finish puts it back when the parent ends), so
-- that no call looks at it again before then.
local function prune(cutoff_ms, limit)
  limit = tonumber(limit)
  local count, passed = 0, 0
  while count < limit do
    local doomed = redis.call('ZRANGEBYSCORE', ENDED, '-inf', '(' .. cutoff_ms, 'WITHSCORES', 'LIMIT', passed, limit - count)
    if #doomed == 0 then break end
    for i = 1, #doomed, 2 do
      local id = doomed[i]
      local row = load(id)
      local parent = row and row.par and redis.call('HGET', run_key(row.par), 'st')
      if not row then
        redis.call('ZREM', ENDED, id)
      elseif not FINISHED[row.st] then
        passed = passed + 1
      elseif parent and not FINISHED[parent] then
        redis.call('ZREM', ENDED, id)
        redis.call('ZADD', kept_key(row.par), doomed[i + 1], id)
      else
        delete_run(id, row)
        count = count + 1
      end
    end
  end
  return {changed, count}
end

-- op: put_schedule
local function put_schedule(name, def, created, tick, replace)
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

-- op: schedules
local function schedules(name)
  if name ~= '' then return {schedule(name)} end
  local out = {}
  for _, each in ipairs(redis.call('HKEYS', SCHED_DEF)) do out[#out + 1] = schedule(each) end
  return out
end

-- op: delete_schedule
local function delete_schedule(name)
  local found = redis.call('HDEL', SCHED_DEF, name)
  redis.call('HDEL', SCHED_CREATED, name)
  redis.call('HDEL', SCHED_TICK, name)
  if found > 0 then mark(SCHEDULES) end
  return {changed, found}
end

-- op: advance
local function advance(name, previous, tick)
  if remembered() then return {changed, 1} end
  if redis.call('HEXISTS', SCHED_DEF, name) == 0 or (redis.call('HGET', SCHED_TICK, name) or '') ~= previous then
    return {changed, 0}
  end
  redis.call('HSET', SCHED_TICK, name, tick)
  remember('1')
  return {changed, 1}
end

-- op: beat
-- age_ms: how old the caller says its heartbeat is, by its own clock (0 for a fresh one).
local function beat(worker, info, age_ms, ...)
  redis.call('HSET', WORKERS, worker, info)
  redis.call('ZADD', BEATS, server_ms() - tonumber(age_ms), worker)
  local stop = {}
  for _, id in ipairs({...}) do
    local fields = redis.call('HMGET', run_key(id), 'own', 'cr', 'st')
    if fields[3] and (fields[1] ~= worker or fields[2] == '1' or FINISHED[fields[3]]) then stop[#stop + 1] = id end
  end
  return {changed, stop}
end

-- op: workers
local function workers()
  local out = {server_ms()}
  local flat = redis.call('HGETALL', WORKERS)
  for i = 1, #flat, 2 do
    out[#out + 1] = flat[i]
    out[#out + 1] = flat[i + 1]
    out[#out + 1] = redis.call('ZSCORE', BEATS, flat[i]) or '0'
  end
  return out
end

-- op: retire
local function retire(worker)
  redis.call('HDEL', WORKERS, worker)
  redis.call('ZREM', BEATS, worker)
  return {changed}
end

-- op: adopt
local function adopt(owner, count, ...)
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
