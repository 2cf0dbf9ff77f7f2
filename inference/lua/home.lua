-- A home list's cache miss in one round trip: the cached list if there is one, else everything
-- a home list reads. Every key name and template comes from schemas/keys.py (Keys.home_script,
-- Keys.home_templates, Keys.recs_versioned); inference/retrieval.py (HomeArgs) builds ARGV in
-- the order below. Single-node Redis: the dynamic keys are not declared in KEYS.
--
-- KEYS: cache version, user profile hash, seen set, recent list, global popularity, trending
-- ARGV: n             popularity entries to read (global and segment)
--       recent_n      recent items to read
--       pairs_of      how many distinct recent items to read co-occurrences of
--       pairs_n       co-occurring items per recent item
--       trend_n       trending entries to read
--       full          '1': also recent items, trending and co-occurrences (model strategies)
--       want_cached   '1': answer the cached list when there is one
--       recs0         the cached list's key at cache version 0
--       recs_a, recs_b   the cached list's key around a version > 0: recs_a .. version .. recs_b
--       seg_a, seg_b     segment popularity: seg_a .. segment .. seg_b
--       pairs_a, pairs_b co-occurrences of an item: pairs_a .. item .. pairs_b
--       pending_idx   on a miss, the user's recs index ('' for none): ``pending`` is added to
--       pending       it before the state is read, so the list computed from this state is
--       pending_ttl   stored only if no invalidation deleted the index since (store_list.lua)
--
-- Returns {version, cached} on a hit, else
--         {version, false, profile, seen, pop_global, pop_segment, recent, trending, pairs}.

local version_key, profile_key, seen_key, recent_key, pop_global_key, pop_trend_key = unpack(KEYS)
local n, recent_n, pairs_of, pairs_n, trend_n, full, want_cached,
      recs0, recs_a, recs_b, seg_a, seg_b, pairs_a, pairs_b, pending_idx, pending, pending_ttl = unpack(ARGV)
n, recent_n, pairs_of = tonumber(n), tonumber(recent_n), tonumber(pairs_of)
pairs_n, trend_n = tonumber(pairs_n), tonumber(trend_n)

local version = redis.call('GET', version_key) or '0'
if want_cached == '1' then
  local recs = recs0
  if version ~= '0' then recs = recs_a .. version .. recs_b end
  local cached = redis.call('GET', recs)
  if cached then return {version, cached} end
end

if pending_idx and pending_idx ~= '' then
  redis.call('SADD', pending_idx, pending)
  redis.call('EXPIRE', pending_idx, pending_ttl)
end
local prof = redis.call('HMGET', profile_key, 'segment', 'profession', 'level')
local seg = prof[1]
if not seg or seg == '' then seg = prof[2] end
local seen = redis.call('SMEMBERS', seen_key)
local popg = redis.call('ZREVRANGE', pop_global_key, 0, n - 1, 'WITHSCORES')
local segpop = {}
if seg and seg ~= '' then
  segpop = redis.call('ZREVRANGE', seg_a .. seg .. seg_b, 0, n - 1, 'WITHSCORES')
end
local recent, trend, pairs = {}, {}, {}
if full == '1' then
  recent = redis.call('LRANGE', recent_key, 0, recent_n - 1)
  trend = redis.call('ZREVRANGE', pop_trend_key, 0, trend_n - 1, 'WITHSCORES')
  local done, left = {}, pairs_of
  for _, it in ipairs(recent) do
    if left <= 0 then break end
    if not done[it] then
      done[it] = true
      left = left - 1
      pairs[#pairs + 1] = {it, redis.call('ZREVRANGE', pairs_a .. it .. pairs_b, 0, pairs_n - 1, 'WITHSCORES')}
    end
  end
end
return {version, false, prof, seen, popg, segpop, recent, trend, pairs}
