--[[ The Redis stream store (flue_node_like/streams_redis.py): every operation is one call of this
script, so each is atomic. The rules are those of flue_core/streams/rules.py, which states them; this
is the same logic over Redis keys. docs/redis.md lists the keys.

  EVALSHA <sha> 1 <base>paths <base> <op> <now> <origin> <op's arguments...>

<base> is "<prefix>:ds:". <now> is the caller's clock (seconds since the epoch, decimal text), so that
every backend expires streams by the same clock the caller passes. <origin> names the calling store
instance in change messages.

The reply is an array: a JSON header, then (for "read") the records. The header has "refused":
[name, args...] when the request is refused (flue_core/streams/refusals.py names them), the operation's
result otherwise, and "changed": the paths whose records, closure or existence changed, which were
also published on <base>changes as [origin, paths].

Every operation checks everything before it writes, so a refused request changes nothing — except
that a stream found expired on the way is removed, as it would be by any other operation.

Numbers that must stay exact beyond 14 digits (expiry times, producer epochs and seqs) are kept as
the decimal text the caller sent: cjson would round them.
]]

local base, op, now_text, origin = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = tonumber(now_text)
local PATHS = KEYS[1]
local IDS = base .. 'ids'
local EXPIRY = base .. 'expiry'
local LAYOUT_KEY = base .. 'layout'
local LAYOUT = '1'
local DEFAULT_TYPE = 'application/octet-stream'
local JSON_TYPE = 'application/json'
local FETCH = 256 -- records per XRANGE

local changed, seen = {}, {}
local function mark(path)
  if not seen[path] then
    seen[path] = true
    changed[#changed + 1] = path
  end
end

local function refuse(name, ...)
  error({refused = {name, ...}})
end

local function opt(value)
  if value == '' then return nil end
  return value
end

-- rows ------------------------------------------------------------------------------------------------

local function row_key(id) return base .. 's:' .. id end
local function records_key(id) return base .. 'r:' .. id end
local function producers_key(id) return base .. 'p:' .. id end

-- A stream's hash: path, ct (content type), mt (media type), tail, touched, fork_at, forks, and when
-- set: ttl, exp, closed, cb_id/cb_epoch/cb_seq (the producer request that closed it), sseq (last
-- Stream-Seq), fork_of (source id), deleted, s_ttl/s_exp/s_fork/s_src/s_at/s_sub (what its creation
-- asked for, which an idempotent re-creation is compared with).
local function load(id)
  local flat = redis.call('HGETALL', row_key(id))
  local row = {id = id}
  for i = 1, #flat, 2 do row[flat[i]] = flat[i + 1] end
  row.tail, row.fork_at, row.forks = tonumber(row.tail), tonumber(row.fork_at), tonumber(row.forks)
  return row
end

local function find(path)
  local id = redis.call('HGET', PATHS, path)
  if not id then return nil end
  return load(id)
end

local function expiry_of(row)
  local at
  if row.exp then at = tonumber(row.exp) end
  if row.ttl then
    local idle = tonumber(row.touched) + tonumber(row.ttl)
    if not at or idle < at then at = idle end
  end
  return at
end

local function expired(row)
  local at = expiry_of(row)
  return at ~= nil and now >= at
end

local function index_expiry(row)
  local at = expiry_of(row)
  if at then redis.call('ZADD', EXPIRY, at, row.id) end
end

local function meta(row)
  return {
    path = row.path, id = tonumber(row.id), type = row.ct, tail = row.tail, closed = row.closed == '1',
    ttl = row.ttl and tonumber(row.ttl), expires_at = row.exp,
  }
end

local function drop(row)
  redis.call('DEL', row_key(row.id), records_key(row.id), producers_key(row.id))
  redis.call('ZREM', EXPIRY, row.id)
  if redis.call('HGET', PATHS, row.path) == row.id then redis.call('HDEL', PATHS, row.path) end
end

-- Delete row — softly while forks read it — and the soft-deleted sources it was the last fork of.
local function remove(row)
  mark(row.path)
  if row.forks > 0 then
    redis.call('HSET', row_key(row.id), 'deleted', '1')
    redis.call('ZREM', EXPIRY, row.id)
    return
  end
  drop(row)
  if row.fork_of then
    local source = load(row.fork_of)
    source.forks = source.forks - 1
    if source.deleted and source.forks == 0 then
      remove(source)
    else
      redis.call('HSET', row_key(source.id), 'forks', source.forks)
    end
  end
end

-- The stream at path after applying its expiry, or nil.
local function current(path)
  local row = find(path)
  if row and not row.deleted and expired(row) then
    remove(row)
    row = find(path)
  end
  return row
end

-- The stream at path, which must exist and not be soft-deleted.
local function live(path)
  local row = current(path)
  if not row then refuse('not_found', path) end
  if row.deleted then refuse('gone', path) end
  return row
end

local function touch(row)
  if row.ttl then
    row.touched = now_text
    redis.call('HSET', row_key(row.id), 'touched', now_text)
    index_expiry(row)
  end
end

-- records -----------------------------------------------------------------------------------------------

-- A record is the stream entry "<position>-0" with field d (its bytes) and, for a JSON record of more
-- than one message, m: the byte offsets where its messages end, comma-separated (a fork's sub-offset
-- cuts it there).
local function add_records(id, first, records)
  for i, record in ipairs(records) do
    local entry = string.format('%d-0', first + i - 1)
    if record.ends then
      redis.call('XADD', records_key(id), entry, 'd', record.data, 'm', record.ends)
    else
      redis.call('XADD', records_key(id), entry, 'd', record.data)
    end
  end
end

-- How many records and bytes a read may still return (the first record always fits).
local function take(budget, data)
  if budget.records <= 0 or (budget.taken > 0 and #data > budget.bytes) then return false end
  budget.records = budget.records - 1
  budget.bytes = budget.bytes - #data
  budget.taken = budget.taken + 1
  return true
end

-- Append to out row's records at after < position <= upto within budget: from its fork sources up to
-- its fork offset, then its own. Returns the last position taken (after, if none).
local function gather(row, after, upto, budget, out)
  if row.fork_of and after < row.fork_at then
    local limit = math.min(upto, row.fork_at)
    after = gather(load(row.fork_of), after, limit, budget, out)
    if after < limit then return after end -- the budget ran out inside the inherited range
  end
  after = math.max(after, row.fork_at)
  while after < upto and budget.records > 0 do
    local entries = redis.call('XRANGE', records_key(row.id), after + 1, upto, 'COUNT', math.min(budget.records, FETCH))
    if #entries == 0 then return after end
    for _, entry in ipairs(entries) do
      local fields = entry[2]
      if not take(budget, fields[2]) then return after end
      after = tonumber(string.match(entry[1], '^(%d+)'))
      out[#out + 1] = {position = after, data = fields[2], ends = fields[4]}
    end
  end
  return after
end

-- The first sub bytes (JSON: messages) of the record after anchor in source.
local function sub_offset_prefix(source, anchor, sub)
  local out = {}
  gather(source, anchor, anchor + 1, {records = 1, bytes = 0, taken = 0}, out)
  local following, available, cut, ends = out[1], 0, 0, nil
  if following then
    if source.mt == JSON_TYPE then
      ends = {}
      for offset in string.gmatch(following.ends or tostring(#following.data), '%d+') do
        ends[#ends + 1] = tonumber(offset)
      end
      available = #ends
      cut = ends[sub]
    else
      available = #following.data
      cut = sub
    end
  end
  if sub > available then refuse('sub_offset_past', available) end
  local prefix = {data = string.sub(following.data, 1, cut)}
  if ends and sub > 1 then prefix.ends = table.concat(ends, ',', 1, sub) end
  return prefix
end

-- The records a request's data makes in a stream of media type mt. The caller parsed JSON bodies:
-- data.json is '' (not JSON-parsed), 'rec' (jrec, jends), 'none' (an empty array at creation) or
-- 'invalid' (refused, with the error the caller keeps).
local function request_records(mt, data)
  if mt == JSON_TYPE then
    if data.json == 'invalid' then refuse('invalid_json') end
    if data.json == 'rec' then return {{data = data.jrec, ends = opt(data.jends)}} end
    return {}
  end
  if data.raw ~= '' then return {{data = data.raw}} end
  return {}
end

local function data_of(a, i)
  return {raw = a[i], json = a[i + 1], jrec = a[i + 2], jends = a[i + 3]}
end

-- Byte-wise a > b (Lua's own string order follows the server's locale).
local function greater(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end

-- operations ----------------------------------------------------------------------------------------

local ops = {}

function ops.open()
  local layout = redis.call('GET', LAYOUT_KEY)
  if not layout then
    redis.call('SET', LAYOUT_KEY, LAYOUT)
    layout = LAYOUT
  end
  return {layout = layout, expected = LAYOUT}
end

local function same_config(row, mt, ttl, exp, closed, fork)
  local asked = mt
  if asked == '' then
    asked = fork and row.mt or DEFAULT_TYPE
  end
  if asked ~= row.mt or closed ~= (row.closed == '1') then return false end
  if (ttl or '') ~= (row.s_ttl or '') or (exp or '') ~= (row.s_exp or '') then return false end
  if not fork or not row.s_fork then return not fork and not row.s_fork end
  return fork.source == row.s_src and fork.sub == tonumber(row.s_sub)
    and (fork.offset == nil or fork.offset == tonumber(row.s_at))
end

-- path, content type, media type, ttl, expires_at, closed, fork?, source, offset, sub-offset, data...
function ops.create(a)
  local path, ct, mt = a[1], opt(a[2]), a[3]
  local ttl, exp, closed = opt(a[4]), opt(a[5]), a[6] == '1'
  local fork
  if a[7] == '1' then fork = {source = a[8], offset = tonumber(opt(a[9]) or ''), sub = tonumber(a[10])} end
  local existing = current(path)
  if existing then
    if existing.deleted then refuse('path_held', path) end
    if not same_config(existing, mt, ttl, exp, closed, fork) then refuse('other_configuration', path) end
    return {meta = meta(existing), created = false}
  end
  local source, anchor, records = nil, 0, {}
  local row_ttl, row_exp = ttl, exp
  if fork then
    source = current(fork.source)
    if not source then refuse('fork_source_not_found', fork.source) end
    if source.deleted then refuse('fork_source_deleted', fork.source) end
    if not ct then
      ct, mt = source.ct, source.mt
    elseif mt ~= source.mt then
      refuse('fork_content_type', ct, source.ct)
    end
    anchor = fork.offset or source.tail
    if anchor < 0 or anchor > source.tail then refuse('fork_offset_past', source.tail) end
    if fork.sub > 0 then records[1] = sub_offset_prefix(source, anchor, fork.sub) end
    if not ttl and not exp then row_ttl, row_exp = source.ttl, source.exp end
  end
  if not ct then ct, mt = DEFAULT_TYPE, DEFAULT_TYPE end
  for _, record in ipairs(request_records(mt, data_of(a, 11))) do records[#records + 1] = record end

  local id = tostring(redis.call('INCR', IDS))
  local row = {
    id = id, path = path, ct = ct, mt = mt, tail = anchor + #records, touched = now_text, ttl = row_ttl,
    exp = row_exp, closed = closed and '1' or nil, fork_at = anchor, forks = 0,
  }
  local fields = {'path', path, 'ct', ct, 'mt', mt, 'tail', row.tail, 'touched', now_text, 'fork_at', anchor, 'forks', 0}
  local function set(name, value)
    if value then
      fields[#fields + 1] = name
      fields[#fields + 1] = value
    end
  end
  set('ttl', row_ttl)
  set('exp', row_exp)
  set('closed', row.closed)
  set('s_ttl', ttl)
  set('s_exp', exp)
  if fork then
    set('fork_of', source.id)
    set('s_fork', '1')
    set('s_src', fork.source)
    set('s_at', anchor)
    set('s_sub', fork.sub)
  end
  redis.call('HSET', row_key(id), unpack(fields))
  redis.call('HSET', PATHS, path, id)
  add_records(id, anchor + 1, records)
  if source then redis.call('HINCRBY', row_key(source.id), 'forks', 1) end
  index_expiry(row)
  mark(path)
  return {meta = meta(row), created = true}
end

local function check_producer(row, producer)
  local state = redis.call('HGET', producers_key(row.id), producer.id)
  local epoch, seq = tonumber(producer.epoch), tonumber(producer.seq)
  if not state then
    if seq ~= 0 then refuse('producer_first_seq', producer.id, producer.seq) end
    return nil
  end
  local current_epoch, last_seq = string.match(state, '^(%d+) (%d+)$')
  if epoch < tonumber(current_epoch) then refuse('producer_stale_epoch', producer.id, producer.epoch, current_epoch) end
  if epoch > tonumber(current_epoch) then
    if seq ~= 0 then refuse('producer_epoch_seq', producer.epoch) end
    return nil
  end
  if seq <= tonumber(last_seq) then return last_seq end
  if seq ~= tonumber(last_seq) + 1 then refuse('producer_gap', producer.id, last_seq, producer.seq) end
  return nil
end

-- path, has data, content type, media type, close, Stream-Seq, producer?, id, epoch, seq, data...
function ops.append(a)
  local path, has_data, ct, mt, close, seq = a[1], a[2] == '1', opt(a[3]), a[4], a[5] == '1', opt(a[6])
  local producer
  if a[7] == '1' then producer = {id = a[8], epoch = a[9], seq = a[10]} end
  local row = live(path)
  if row.closed == '1' then
    if producer and row.cb_id == producer.id and row.cb_epoch == producer.epoch and row.cb_seq == producer.seq then
      return {meta = meta(row), duplicate = true, producer_seq = producer.seq}
    end
    if not has_data and not producer then -- closing a closed stream: nothing to do
      touch(row)
      return {meta = meta(row)}
    end
    refuse('closed', path, row.tail)
  end
  if has_data then
    if not ct then refuse('content_type_missing') end
    if mt ~= row.mt then refuse('content_type', ct, row.ct) end
  elseif not close then
    refuse('empty_append')
  end
  if producer then
    local last = check_producer(row, producer)
    if last then return {meta = meta(row), duplicate = true, producer_seq = last} end
  end
  if seq and row.sseq and not greater(seq, row.sseq) then refuse('seq_conflict', seq, row.sseq) end
  local records = request_records(row.mt, data_of(a, 11))

  local fields = {'touched', now_text}
  if #records > 0 then
    add_records(row.id, row.tail + 1, records)
    row.tail = row.tail + #records
    fields[#fields + 1] = 'tail'
    fields[#fields + 1] = row.tail
  end
  if producer then
    redis.call('HSET', producers_key(row.id), producer.id, producer.epoch .. ' ' .. producer.seq)
  end
  if seq then
    fields[#fields + 1] = 'sseq'
    fields[#fields + 1] = seq
  end
  if close then
    row.closed = '1'
    fields[#fields + 1] = 'closed'
    fields[#fields + 1] = '1'
    if producer then
      for _, field in ipairs({'cb_id', producer.id, 'cb_epoch', producer.epoch, 'cb_seq', producer.seq}) do
        fields[#fields + 1] = field
      end
    end
  end
  row.touched = now_text
  redis.call('HSET', row_key(row.id), unpack(fields))
  if row.ttl then index_expiry(row) end
  mark(path)
  return {meta = meta(row), producer_seq = producer and producer.seq}
end

function ops.delete(a)
  remove(live(a[1]))
  return {}
end

function ops.head(a)
  return {meta = meta(live(a[1]))}
end

-- path, after ('' : from the tail), limit, max bytes
function ops.read(a)
  local row = live(a[1])
  touch(row)
  if a[2] == '' then return {meta = meta(row), next = row.tail} end
  local after = math.max(tonumber(a[2]), 0)
  local out = {}
  gather(row, after, row.tail, {records = tonumber(a[3]), bytes = tonumber(a[4]), taken = 0}, out)
  local records = {}
  for i, record in ipairs(out) do records[i] = record.data end
  if #out > 0 then after = out[#out].position end
  return {meta = meta(row), next = after}, records
end

-- at most how many streams
function ops.purge(a)
  local limit = tonumber(a[1])
  local ids = redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', now_text, 'LIMIT', 0, limit)
  local count = 0
  for _, id in ipairs(ids) do
    local row = load(id)
    if not row.path then
      redis.call('ZREM', EXPIRY, id)
    elseif not row.deleted and expired(row) then
      remove(row)
      count = count + 1
    end
  end
  return {count = count, more = #ids == limit}
end

-- dispatch ------------------------------------------------------------------------------------------

local operation = ops[op]
if not operation then return redis.error_reply('flue: unknown stream operation ' .. tostring(op)) end
local args = {}
for i = 5, #ARGV do args[#args + 1] = ARGV[i] end
local ok, header, records = pcall(operation, args)
if not ok then
  if type(header) ~= 'table' or not header.refused then error(header) end
  header, records = {refused = header.refused}, nil
end
if #changed > 0 then
  header.changed = changed
  redis.call('PUBLISH', base .. 'changes', cjson.encode({origin, changed}))
end
local reply = {cjson.encode(header)}
if records then
  for i, data in ipairs(records) do reply[i + 1] = data end
end
return reply
