-- Redis Cluster: one batch's effects on hash slots of one node, applied exactly once per slot
-- (streams/cluster.py).
--
-- The batch scripts of the slot groups (apply_interactions.lua, cfg.cluster) compute what a batch
-- adds to popularity, trending, co-occurrences, bandit and day counters, and keep it in their
-- outboxes under the drain's sequence number; the worker merges it per target slot and calls this
-- script once per node with the slots it holds. Each slot remembers the last sequence it applied
-- per partition (its applied-drains hash, partition -> seq), so a drain redone after a crash skips
-- the slots already done. Every command touches one slot.
--
-- KEYS[1]: the first slot's applied-drains hash (routes the call to the node)
-- ARGV[1]: partition     ARGV[2]: drain sequence number (increasing per partition)
-- ARGV[3]: JSON list of [applied-drains hash of a slot (Keys.applied_drains), operations on keys of
--          that slot], the operations each one of
--   ["z", key, top_n, member, incr, member, incr, ...]  ZINCRBY each; top_n > 0: a list that gained
--                                                       a member keeps its top_n (co-occurrences)
--   ["h", key, field, n, field, n, ...]                 HINCRBY
--   ["f", key, field, v, field, v, ...]                 HINCRBYFLOAT
--   ["i", key, n]                                       INCRBY
--   ["l", key, max, entry, entry, ...]                  LPUSH, then LTRIM to max entries
--   ["t", trend key, meta key, epoch, hl, now, renorm, member, incr, ...]
--        trending: the increments were computed against `epoch`; they are rescaled to the epoch
--        the slot holds (moved, with every score rescaled once, when the weights grow large)
-- Returns {slots applied, epoch, hl} (epoch and hl of trending when this call applied it, else '').

local function num(x)
  return string.format('%.17g', x)
end

local out_epoch, out_hl = '', ''
local applied = 0
for _, slot in ipairs(cjson.decode(ARGV[3])) do
local drained, ops = slot[1], slot[2]
local done = redis.call('HGET', drained, ARGV[1])
if not (done and tonumber(done) >= tonumber(ARGV[2])) then
applied = applied + 1
for _, op in ipairs(ops) do
  local kind, k = op[1], op[2]
  if kind == 'z' then
    local top_n, grown = tonumber(op[3]), false
    for i = 4, #op, 2 do
      local incr = tonumber(op[i + 1])
      if tonumber(redis.call('ZINCRBY', k, num(incr), op[i])) == incr then grown = true end
    end
    if grown and top_n > 0 then redis.call('ZREMRANGEBYRANK', k, 0, -(top_n + 1)) end
  elseif kind == 'h' then
    for i = 3, #op, 2 do redis.call('HINCRBY', k, op[i], op[i + 1]) end
  elseif kind == 'f' then
    for i = 3, #op, 2 do redis.call('HINCRBYFLOAT', k, op[i], num(op[i + 1])) end
  elseif kind == 'i' then
    redis.call('INCRBY', k, op[3])
  elseif kind == 'l' then
    for i = 4, #op do redis.call('LPUSH', k, op[i]) end
    redis.call('LTRIM', k, 0, op[3] - 1)
  elseif kind == 't' then
    local meta_key, src_epoch, cfg_hl, now, renorm = op[3], tonumber(op[4]), tonumber(op[5]), tonumber(op[6]), tonumber(op[7])
    local meta = redis.call('HMGET', meta_key, 'epoch', 'hl')
    local epoch, hl = tonumber(meta[1]), tonumber(meta[2])
    if not epoch then
      epoch, hl = src_epoch, cfg_hl
      redis.call('HSET', meta_key, 'epoch', num(epoch), 'hl', num(hl))
    elseif hl ~= cfg_hl or (now - epoch) / hl > renorm then
      local factor = math.pow(2, -(now - epoch) / hl)
      if redis.call('EXISTS', k) == 1 then
        redis.call('ZUNIONSTORE', k, 1, k, 'WEIGHTS', num(factor))
      end
      epoch, hl = now, cfg_hl
      redis.call('HSET', meta_key, 'epoch', num(epoch), 'hl', num(hl))
    end
    local scale = math.pow(2, (src_epoch - epoch) / hl)
    for i = 8, #op, 2 do redis.call('ZINCRBY', k, num(tonumber(op[i + 1]) * scale), op[i]) end
    out_epoch, out_hl = num(epoch), num(hl)
  end
end
redis.call('HSET', drained, ARGV[1], ARGV[2])
end
end
return {applied, out_epoch, out_hl}
