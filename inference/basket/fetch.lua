-- Basket signals in one round trip: pair lists, popularity lists, then the catalog fields
-- of every item they name (and of the basket's own items).
-- ARGV[1] = JSON {"lists": [[key, limit], ...], "item": ["sr:item:", ""], "basket": [ids]}
--   lists: zset keys built by schemas/keys.py Keys; item: Keys.item_template, the catalog hash
--   of an item as the literal parts around its id
-- returns JSON {"lists": [[member, score, ...], ...], "meta": {id: [title, category, private_label]}}
local cfg = cjson.decode(ARGV[1])
local out_lists = {}
local wanted = {}
local order = {}
local function want(id)
  if not wanted[id] then wanted[id] = true; order[#order + 1] = id end
end
for _, id in ipairs(cfg.basket) do want(id) end
for i, spec in ipairs(cfg.lists) do
  local limit = tonumber(spec[2])
  local res = {}
  if limit > 0 then res = redis.call('ZREVRANGE', spec[1], 0, limit - 1, 'WITHSCORES') end
  for j = 1, #res, 2 do want(res[j]) end
  out_lists[i] = res
end
local meta = {}
for _, id in ipairs(order) do
  local f = redis.call('HMGET', cfg.item[1] .. id .. cfg.item[2], 'title', 'category', 'private_label')
  if f[1] or f[2] or f[3] then
    meta[id] = {f[1] or '', f[2] or '', f[3] or ''}
  end
end
return cjson.encode({lists = out_lists, meta = meta})
