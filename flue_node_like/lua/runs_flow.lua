-- The run store's take from the ready pool, under each workflow's flow-control limits (see runs.lua
-- for the pools, the held and the started sets it reads).

-- op: take
-- flows: count groups of workflow, concurrency, rate, per (ms); '' for no limit. Then '1' and run ids
-- (only those) or '0'. Replies {changed, records, retry_ms or ''}.
local function take(owner, limit, now_ms, count, ...)
  local rest = {...}
  limit, now_ms, count = tonumber(limit), tonumber(now_ms), tonumber(count)
  local out, taken = {}, {}
  local kept = remembered()
  if kept then  -- this very call, sent twice
    for id in string.gmatch(kept, '%S+') do
      local row = load(id)
      if row and row.st == 'queued' and row.own == owner then out[#out + 1] = record(id) end
    end
    return {changed, out, ''}
  end
  local flows, order = {}, {}
  for i = 1, count * 4, 4 do
    local rate, per = tonumber(rest[i + 2]), tonumber(rest[i + 3])
    flows[rest[i]] = {wf = rest[i], conc = tonumber(rest[i + 1]), rate = per and rate, per = per,
      croom = {}, rroom = {}, noted = {}, offset = 0}
    order[#order + 1] = rest[i]
    if per then redis.call('HSET', RATED, rest[i], per) end
  end

  -- Room left in a bucket, read once per call and counted down as runs are taken.
  local function conc_room(flow, ck)
    if not flow.conc then return limit end
    local slot = tag(ck)
    if flow.croom[slot] == nil then
      local used
      if ck then
        used = redis.call('SCARD', busy_key(flow.wf, ck))
      else
        used = redis.call('SCARD', held_key(flow.wf)) - redis.call('SCARD', keyed_key(flow.wf))
      end
      flow.croom[slot] = flow.conc - used
    end
    return flow.croom[slot]
  end
  local function rate_room(flow, rk)
    if not flow.rate then return limit end
    local slot = tag(rk)
    if flow.rroom[slot] == nil then
      local starts = starts_key(flow.wf, rk)
      redis.call('ZREMRANGEBYSCORE', starts, '-inf', now_ms - flow.per)  -- out of the window
      flow.rroom[slot] = flow.rate - redis.call('ZCARD', starts)
    end
    return flow.rroom[slot]
  end

  -- When a bucket at its rate has room again: its oldest start in the window (now for a run taken and
  -- not started yet) plus the window.
  local retry
  local function note_retry(flow, rk)
    local slot = tag(rk)
    if flow.noted[slot] then return end
    flow.noted[slot] = true
    local first = redis.call('ZRANGE', starts_key(flow.wf, rk), 0, 0, 'WITHSCORES')
    local at = (#first > 0 and math.min(tonumber(first[2]), now_ms) or now_ms) + flow.per
    if not retry or at < retry then retry = at end
  end

  -- How many runs of a bucket may still be taken, and whether none may only because of its rate.
  local function room(flow, ck, rk, started)
    local n = math.min(conc_room(flow, ck), limit - #taken)
    if n > 0 and not started then
      local r = rate_room(flow, rk)
      if r <= 0 then return 0, true end
      n = math.min(n, r)
    end
    return n, false
  end

  -- Give owner the queued run id; false if it is not in the pool after all (a stale entry).
  local function take_run(flow, id)
    local flat = redis.call('HGETALL', run_key(id))
    local row = {}
    for i = 1, #flat, 2 do row[flat[i]] = flat[i + 1] end
    if row.st ~= 'queued' or row.own then return false end
    row.id = id
    if flow.conc then flow.croom[tag(row.ck)] = conc_room(flow, row.ck) - 1 end
    if flow.rate and not row.sams then
      flow.rroom[tag(row.rk)] = rate_room(flow, row.rk) - 1
      add_start(flow.wf, row.rk, 'inf', id, flow.per)
      redis.call('HSET', run_key(id), 'own', owner, 'rt', '1')
      row.rt = '1'
    else
      redis.call('HSET', run_key(id), 'own', owner)
    end
    hold(row)
    flat[#flat + 1] = 'own'
    flat[#flat + 1] = owner
    taken[#taken + 1] = id
    out[#out + 1] = flat
    return true
  end

  if rest[count * 4 + 1] == '1' then  -- just these runs, in pool order
    local candidates = {}
    for i = count * 4 + 2, #rest do
      local row = load(rest[i])
      if row and row.st == 'queued' and not row.own and flows[row.wf] then
        row.id = rest[i]
        candidates[#candidates + 1] = {tonumber(pool_score(row, row.ra)), rest[i], row}
      end
    end
    table.sort(candidates, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
    for _, candidate in ipairs(candidates) do
      if #taken >= limit then break end
      local row, flow = candidate[3], flows[candidate[3].wf]
      local n, by_rate = room(flow, row.ck, row.rk, row.sams ~= nil)
      if by_rate then note_retry(flow, row.rk) end
      if n > 0 and take_run(flow, row.id) then pool_remove(row) end
    end
    if #taken > 0 then remember(table.concat(taken, ' ')) end
    return {changed, out, retry or ''}
  end

  -- Every pool of every workflow, merged in pool order. A source is a pool being read (a few runs at a
  -- time, as many as its bucket may give); the sub-pools of <base>pools:<wf> are opened one by one in
  -- the order of their first runs, skipping those at their limits, so a bucket at its limit costs one
  -- look however many runs wait in it. pools:<wf> is left as it is until the end (touched).
  local sources, touched = {}, {}
  local function head(src)
    if src.at > #src.entries and src.done then return nil end
    local n, by_rate = room(src.flow, src.ck, src.rk, src.started)
    if n <= 0 then
      if by_rate and redis.call('ZCARD', src.key) > 0 then note_retry(src.flow, src.rk) end
      return nil
    end
    if src.at > #src.entries then
      src.entries = redis.call('ZRANGE', src.key, 0, n - 1, 'WITHSCORES')
      src.at = 1
      src.done = #src.entries < 2 * n
      if #src.entries == 0 then return nil end
    end
    return src.entries[src.at], tonumber(src.entries[src.at + 1])
  end
  local function source(flow, key, bucket, ck, rk, started)
    sources[#sources + 1] = {flow = flow, key = key, bucket = bucket, ck = ck, rk = rk, started = started, entries = {}, at = 1}
  end
  -- The next sub-pool of pools:<wf> with room: {bucket, score, ck, rk, started}, or nil.
  local function next_bucket(flow)
    while true do
      local batch = redis.call('ZRANGE', pools_key(flow.wf), flow.offset, flow.offset + 15, 'WITHSCORES')
      if #batch == 0 then return nil end
      for i = 1, #batch, 2 do
        flow.offset = flow.offset + 1
        local bucket = batch[i]
        local started, at = string.sub(bucket, 1, 1) == 's', 2
        local function key_value()  -- the tag at position at of the bucket's name
          if string.sub(bucket, at, at) == '-' then
            at = at + 1
            return nil
          end
          local colon = string.find(bucket, ':', at, true)
          local length = tonumber(string.sub(bucket, at, colon - 1))
          at = colon + length + 1
          return string.sub(bucket, colon + 1, colon + length)
        end
        local ck = key_value()
        local rk = not started and key_value() or nil
        local n, by_rate = room(flow, ck, rk, started)
        if by_rate then note_retry(flow, rk) end
        if n > 0 then return {bucket, tonumber(batch[i + 1]), ck, rk, started} end
      end
    end
  end

  for _, wf in ipairs(order) do
    local flow = flows[wf]
    source(flow, ready_key(wf), nil, nil, nil, false)
    flow.pending = next_bucket(flow)
  end
  while #taken < limit do
    local best, best_id, best_score
    for _, src in ipairs(sources) do
      local id, score = head(src)
      if id and (not best or score < best_score or (score == best_score and id < best_id)) then
        best, best_id, best_score = src, id, score
      end
    end
    local opened = false
    for _, wf in ipairs(order) do  -- a sub-pool whose first run may come before the best so far
      local flow = flows[wf]
      local pending = flow.pending
      if pending and (not best or pending[2] <= best_score) then
        source(flow, subpool_key(wf, pending[1]), pending[1], pending[3], pending[4], pending[5])
        flow.pending = next_bucket(flow)
        opened = true
      end
    end
    if not opened then
      if not best then break end
      best.at = best.at + 2
      take_run(best.flow, best_id)
      redis.call('ZREM', best.key, best_id)  -- taken, or a stale entry: out of the pool either way
      if best.bucket then touched[#touched + 1] = {best.flow.wf, best.bucket} end
    end
  end
  for _, each in ipairs(touched) do refresh(each[1], each[2]) end
  if #taken > 0 then remember(table.concat(taken, ' ')) end
  return {changed, out, retry or ''}
end
