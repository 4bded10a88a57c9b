--[[ Step results (flue_node_like/redis_scripts.py puts this before the run store's prelude, and makes
it, with one call of put_step, the whole script of save_step: a step is stored on every step a
workflow takes, and the prelude alone costs Redis more than the store).

A run's results are the hash <base>steps:<id> (name -> JSON); a hash keeps no order, so the names, in
the order first saved, are the list <base>steporder:<id>. ]]

local function step_keys(base, id) return base .. 'steps:' .. id, base .. 'steporder:' .. id end

-- Stored once: a second save of a name keeps the first.
local function put_step(base, id, name, value)
  local results, order = step_keys(base, id)
  if redis.call('HSETNX', results, name, value) == 1 then redis.call('RPUSH', order, name) end
end
