-- One batch of interactions applied atomically: exactly-once bookkeeping and every effect.
--
-- ARGV[1]: JSON config (key names and templates from schemas/keys.py Keys.interactions_script,
--          strengths already applied, half-life, windows...)
-- ARGV[2]: JSON list of rows [event_id, type, user, item, ts, strength, segment, basket_id, strategy, day,
--          value, dwell_ms, extra] (streams/batch.py ROW_FIELDS; '' where absent)
-- ARGV[3]: JSON list of [partition, offset] of each row's record, same order (empty: no positions)
--
-- Why one script: the bookkeeping and the effects commit together (a replay after a crash
-- counts nothing twice) and every effect is aggregated per distinct key here, on the server,
-- instead of one client-packed command per event.
--
-- Exactly once, in bounded memory (docs/streams.md, "Bounded state"):
--   * a replay (the same records fetched again after a crash or a rebalance) is caught by the
--     per-partition offset watermark (hash partition -> highest applied offset of the topic):
--     a row at or below it was applied. O(partitions), not a key per event. Beside each offset,
--     `{partition}:fp` keeps the fingerprint (CRC-32 of the value) of the record at it, so a
--     restarted log (new records at old offsets) is told apart from a replay (streams/consumer.py);
--   * a client that sends one event twice (two records, two offsets) is caught by the event_id
--     window: sets of the ids applied in the current and the previous window bucket. Impressions
--     are not in the window: the API derives their ids from the request (never re-sent by a
--     client), they are the bulk of the traffic, and their replays are the watermark's job;
--   * upgrade path: a partition without a watermark yet (the first batch after the upgrade)
--     also reads the legacy per-event markers (sr:dedupe:{event_id}) of the old worker.
-- The watermark and the window are written last, so a script that fails half-way (Redis does not
-- roll scripts back) leaves the batch to be retried rather than silently skipped.
--
-- Per-user keys (seen, recent, counts, per-user stats) carry the inactivity TTL: set when a key is
-- created and renewed on the user's first batch of each UTC day (the day of the last renewal rides
-- in the user's session entry), so a steady stream costs no EXPIRE per event. A forgotten user's
-- events dated before the forget are dropped (streams/forget.py).
--
-- Redis Cluster (cfg.cluster, streams/cluster.py, docs/redis-cluster.md): the batch is applied per
-- slot group (a hash slot: every row's user in it; the working state keys carry the group's hash
-- tag), and one call applies the groups of one node (cfg.groups; ARGV[2] and ARGV[3] then hold a
-- list of rows and of positions per group): each group's commands touch its slot only. What is
-- local (the users' keys, sessions, impressions, the watermark and event_id window of the group) is
-- written here; the effects on other slots (popularity, trending, co-occurrences, bandit and day
-- counters, comments) are returned and stored in the group's outbox under cfg.seq with the rest of
-- the group's writes, so they are applied to their slots exactly once even if the worker dies.
--
-- Returns {new, duplicates, invalidated users, forgotten rows dropped}; in cluster mode one
-- {new, duplicates, invalidated users, dropped, JSON of the effects on other slots} per group.

local function apply(cfg, rows, positions)
local K = cfg.keys

-- a key template is the list of the literal parts around its placeholders: {"sr:seen:", ""}
local function key(t, a, b)
  if b == nil then return t[1] .. a .. t[2] end
  return t[1] .. a .. t[2] .. b .. t[3]
end

local function num(x)
  return string.format('%.17g', x)
end

-- --------------------------------------------------------------------------- trending epoch
-- Forward decay: an event at time ts adds strength * 2^((ts - epoch) / hl). The ranking is the
-- same as exponential decay at any "now", whatever the order events arrive in; when the weights
-- grow large (or the half-life changes) every score is rescaled once and the epoch moved.
local epoch, hl
if cfg.cluster then
  epoch, hl = cfg.epoch, cfg.hl  -- the trending slot's epoch, read by the caller (rescaled there if it moved)
else
local meta = redis.call('HMGET', K.trend_meta, 'epoch', 'hl')
epoch, hl = tonumber(meta[1]), tonumber(meta[2])
if not epoch then
  epoch, hl = cfg.now, cfg.hl
  redis.call('HSET', K.trend_meta, 'epoch', num(epoch), 'hl', num(hl))
elseif hl ~= cfg.hl or (cfg.now - epoch) / hl > cfg.renorm then
  local factor = math.pow(2, -(cfg.now - epoch) / hl)
  if redis.call('EXISTS', K.pop_trend) == 1 then
    redis.call('ZUNIONSTORE', K.pop_trend, 1, K.pop_trend, 'WEIGHTS', num(factor))
  end
  epoch, hl = cfg.now, cfg.hl
  redis.call('HSET', K.trend_meta, 'epoch', num(epoch), 'hl', num(hl))
end
end

local function add(t, k, v)
  t[k] = (t[k] or 0) + v
end

local function sub(t, k)
  local s = t[k]
  if s == nil then s = {}; t[k] = s end
  return s
end

-- --------------------------------------------------------------------------- lookups
-- Per-user state every batch needs is read with one command per batch, not one per user:
-- segments (HMGET of the user -> segment hash) and sessions: hashes user -> "item|ts|day" per time
-- bucket of one session gap (the current and the previous bucket are read; a bucket expires after
-- two), so inactive users hold no session and a batch reads and writes them in a command or two.
local CHUNK = 500
local users_in_batch, user_list = {}, {}
for _, r in ipairs(rows) do
  if not users_in_batch[r[3]] then
    users_in_batch[r[3]] = true
    user_list[#user_list + 1] = r[3]
  end
end

local segment_of, sessions = {}, {}
local sbucket = math.floor(cfg.now / cfg.session_bucket_s)
local today = math.floor(cfg.now / 86400)
local sess_now, sess_before = key(K.sessions_bucket, sbucket), key(K.sessions_bucket, sbucket - 1)
local read_before = redis.call('EXISTS', sess_before) == 1
for i = 1, #user_list, CHUNK do
  local part = {unpack(user_list, i, math.min(i + CHUNK - 1, #user_list))}
  local segs
  if cfg.cluster then  -- the segment from each user's own profile hash (same slot as the user)
    segs = {}
    for j, user in ipairs(part) do segs[j] = redis.call('HGET', key(K.user_profile, user), 'segment') end
  else
    segs = redis.call('HMGET', K.user_segments, unpack(part))
  end
  local sess = redis.call('HMGET', sess_now, unpack(part))
  local older = read_before and redis.call('HMGET', sess_before, unpack(part)) or {}
  for j, user in ipairs(part) do
    segment_of[user] = (segs[j] and segs[j] ~= '') and segs[j] or false
    local s = {}
    local raw = sess[j] or older[j]
    if raw then
      local it, t, d = string.match(raw, '^(.*)|([^|]*)|([^|]*)$')
      if it ~= '' then s.i = it end
      s.t, s.d = tonumber(t), tonumber(d)
    end
    sessions[user] = s
  end
end

local function segment(user, from_event)
  if from_event ~= '' then return from_event end
  return segment_of[user]
end

local function session(user)
  return sessions[user]
end

local baskets, baskets_new = {}, {}
local function basket(id)
  local b = baskets[id]
  if b == nil then
    b = {set = {}, n = 0, list = {}}
    for _, it in ipairs(redis.call('SMEMBERS', key(K.basket, id))) do
      b.set[it] = true; b.n = b.n + 1; b.list[#b.list + 1] = it
    end
    baskets[id] = b
    baskets_new[id] = {}
  end
  return b
end

-- Impressions live in time buckets of one reward window (hash "user<TAB>item" -> "strategy|ts|credited"):
-- the impression a later event may credit is in its own bucket or the one before, so a whole
-- batch's lookups are one HMGET per bucket instead of one command per event.
local W = cfg.window
local function bucket_of(ts) return math.floor(ts / W) end
local function parse_imp(raw, b)
  if not raw then return false end
  local strat, ts, credited = string.match(raw, '^(.*)|([^|]*)|([^|]*)$')
  if not strat then return false end
  return {s = strat, t = tonumber(ts), c = tonumber(credited), b = b}
end

-- event types whose metrics are attributed to an arm (besides clicks and rewarded types)
local FEEDBACK = {like = true, dislike = true, rate = true, dwell = true, convert = true, purchase = true, enroll = true}
local stored = {}  -- bucket -> field -> record or false, prefetched
do
  local need = {}
  for _, r in ipairs(rows) do
    local typ = r[2]
    if cfg.rewards[typ] or typ == 'click' or FEEDBACK[typ] or r[12] ~= '' or r[13] ~= '' then
      local f, b = r[3] .. '\t' .. r[4], bucket_of(r[5])
      sub(need, b)[f] = true
      sub(need, b - 1)[f] = true
    end
  end
  for b, fields in pairs(need) do
    if redis.call('EXISTS', key(K.impressions, b)) == 0 then fields = {} end  -- nothing to find
    local list = {}
    for f in pairs(fields) do list[#list + 1] = f end
    local got = {}
    for i = 1, #list, CHUNK do
      local part = redis.call('HMGET', key(K.impressions, b), unpack(list, i, math.min(i + CHUNK - 1, #list)))
      for j = 1, #part do got[list[i + j - 1]] = parse_imp(part[j], b) end
    end
    stored[b] = got
  end
end

local latest, imps_dirty = {}, {}  -- field -> newest impression seen in this batch; bucket -> field -> true
local function impression(user, item, ts)
  local f = user .. '\t' .. item
  local best = latest[f]
  if best == nil then
    best = false
    local b = bucket_of(ts)
    local older, newer = stored[b - 1], stored[b]
    older, newer = older and older[f], newer and newer[f]
    if older then best = older end
    if newer and (not best or newer.t > best.t) then best = newer end
    latest[f] = best
  end
  return best
end

-- --------------------------------------------------------------------------- aggregation
local pop, trend, segpop = {}, {}, {}
local pairs_inc = {}
local seen, recent, counts = {}, {}, {}
local pulls, rewards = {}, {}
local day_stats, user_stats, day_types = {}, {}, {}
local invalidate = {}
local markers = {}
local new, dups, interactions, explicit = 0, 0, 0, 0
local day_float = {}  -- day -> field -> sum kept with HINCRBYFLOAT (ratings may be fractional)
local positives = {}  -- day -> "user<TAB>item" -> arm: first positive feedback of the batch
local comments = {}   -- JSON entries for K.comments, in row order

-- which rows were applied before: replays by the offset watermark, re-sent events by the event_id
-- window, and (upgrade path) legacy per-event markers on a partition that has no watermark yet
local applied = {}      -- row index -> true
local wm, wm_new, wm_fp = {}, {}, {}  -- partition -> applied offset (read) / highest of this batch / its record's fingerprint
do
  local parts, plist = {}, {}
  for i = 1, #positions do
    local p = tostring(positions[i][1])
    if not parts[p] then parts[p] = true; plist[#plist + 1] = p end
  end
  if #plist > 0 then
    local got = redis.call('HMGET', K.watermark, unpack(plist))
    for j, p in ipairs(plist) do wm[p] = tonumber(got[j]) end
  end
  local legacy = {}
  for i = 1, #positions do
    local p, o = tostring(positions[i][1]), positions[i][2]
    local w = wm[p]
    if w ~= nil and o <= w then applied[i] = true
    elseif w == nil and not cfg.cluster then legacy[#legacy + 1] = i end
    if not wm_new[p] or o > wm_new[p] then wm_new[p] = o; wm_fp[p] = positions[i][3] end
  end
  local CH = 1000
  for i = 1, #legacy, CH do
    local ks = {}
    for j = i, math.min(i + CH - 1, #legacy) do ks[#ks + 1] = key(K.dedupe, rows[legacy[j]][1]) end
    local got = redis.call('MGET', unpack(ks))
    for j = 1, #ks do
      if got[j] then applied[legacy[i + j - 1]] = true end
    end
  end
  if cfg.eid_window > 0 then
    local b = math.floor(cfg.now / cfg.eid_window)
    for _, bk in ipairs({key(K.event_ids, b), key(K.event_ids, b - 1)}) do
      if redis.call('EXISTS', bk) == 1 then
        local idx = {}
        for i = 1, #rows do
          if not applied[i] and rows[i][2] ~= 'impression' then idx[#idx + 1] = i end
        end
        for i = 1, #idx, CH do
          local ids = {}
          for j = i, math.min(i + CH - 1, #idx) do ids[#ids + 1] = rows[idx[j]][1] end
          local got = redis.call('SMISMEMBER', bk, unpack(ids))
          for j = 1, #got do
            if got[j] == 1 then applied[idx[i + j - 1]] = true end
          end
        end
      end
    end
  end
end

-- forgotten users (a forget in the last forget_guard_s): their events dated before the forget
-- are dropped, so a late event cannot bring a forgotten user's state back
local forgotten_at = {}
local dropped = 0
if redis.call('EXISTS', K.forgotten_any) == 1 then
  for i = 1, #user_list, CHUNK do
    local part = {unpack(user_list, i, math.min(i + CHUNK - 1, #user_list))}
    local fk = {}
    for j, user in ipairs(part) do fk[j] = key(K.forgotten, redis.sha1hex(user)) end
    local got = redis.call('MGET', unpack(fk))
    for j, user in ipairs(part) do
      if got[j] then forgotten_at[user] = tonumber(got[j]) end
    end
  end
end


local function add_pair(seg, a, b)
  add(sub(sub(pairs_inc, 'ANY'), a), b, 1)
  if seg then add(sub(sub(pairs_inc, seg), a), b, 1) end
end

local function count_day(day, user, field)
  add(sub(day_stats, day), field, 1)
  if user then add(sub(user_stats, user), day .. ':' .. field, 1) end
end

-- ---------------------------------------------------------------- feedback metrics (docs/feedback.md)
-- per day and arm in the day hash ({arm}:{counter}); the arm is the event's strategy, else the
-- strategy of the impression it follows (as for clicks), else '_'
local DWELL = {{1000, 'lt1s'}, {3000, 'lt3s'}, {10000, 'lt10s'}, {30000, 'lt30s'}, {60000, 'lt60s'}}
local POSITIVE = {click = true, like = true, convert = true}

local function feedback(r, day)
  local typ, user, item, ts, value, dwell, extra = r[2], r[3], r[4], r[5], r[11], r[12], r[13]
  if not (typ == 'click' or FEEDBACK[typ] or dwell ~= '' or extra ~= '') then return end
  local imp = impression(user, item, ts)
  local arm = r[9]
  if arm == '' then arm = (imp and imp.s) or '_' end
  local d = sub(day_stats, day)
  local pre = arm .. ':'
  local positive = POSITIVE[typ]
  if typ == 'like' then add(d, pre .. 'likes', 1)
  elseif typ == 'dislike' then add(d, pre .. 'dislikes', 1)
  elseif typ == 'rate' then
    local fl = sub(day_float, day)
    add(fl, pre .. 'rating_sum', value)
    add(fl, pre .. 'rating_sq', value * value)  -- the spread, for the monitor's Welch test
    add(d, pre .. 'rating_count', 1)
    -- the distribution (dashboard): ratings rounded to the nearest whole star
    add(d, pre .. 'rating.' .. math.min(5, math.max(1, math.floor(value + 0.5))), 1)
    if value >= 4 then positive = true end
  end
  -- a conversion: an explicit convert, or a purchase/enroll within the reward window after an impression
  if typ == 'convert' or ((typ == 'purchase' or typ == 'enroll') and imp and ts >= imp.t and ts - imp.t <= W) then
    add(d, pre .. 'conversions', 1)
    positive = true
  end
  if dwell ~= '' then
    add(d, pre .. 'dwell_sum_ms', dwell)
    add(d, pre .. 'dwell_count', 1)
    local b = 'ge60s'
    for _, edge in ipairs(DWELL) do
      if dwell < edge[1] then b = edge[2]; break end
    end
    add(d, pre .. 'dwell.' .. b, 1)
  end
  if extra ~= '' then
    for name, v in pairs(extra.a) do
      add(d, pre .. 'aspect.' .. name .. '.sum', v)
      add(d, pre .. 'aspect.' .. name .. '.count', 1)
    end
    if extra.c ~= '' then
      add(d, pre .. 'comments', 1)
      comments[#comments + 1] = cjson.encode({user = user, item = item, arm = arm, ts = ts, day = day,
        rating = (typ == 'rate') and value or cjson.null, type = typ, text = extra.c})
    end
  end
  if positive then
    local p = sub(positives, day)
    local f = user .. '\t' .. item
    if not p[f] then p[f] = arm end
  end
end

local touched = {}  -- users whose per-user keys were written: their inactivity TTL is renewed
for ri, r in ipairs(rows) do
  local eid, typ, user, item, ts, strength = r[1], r[2], r[3], r[4], r[5], r[6]
  local gone = forgotten_at[user]
  if markers[eid] or applied[ri] then
    dups = dups + 1
  elseif gone and ts <= gone then
    markers[eid] = typ
    dropped = dropped + 1
  else
    markers[eid] = typ
    touched[user] = true
    new = new + 1
    local seg = segment(user, r[7])
    local day = r[10]
    add(sub(counts, user), typ, 1)
    add(sub(day_types, day), typ, 1)
    if cfg.invalidating[typ] then invalidate[user] = true end

    if typ == 'dwell' then
      -- implicit feedback only: the metrics below, not popularity, the seen set or sessions
    elseif typ == 'impression' then
      -- impressions feed the bandit and CTR only: never popularity, pairs or the seen set
      local strat = r[9]
      if strat ~= '' then
        add(pulls, strat, 1)
        count_day(day, user, strat .. ':impressions')
        local f = user .. '\t' .. item
        local rec = {s = strat, t = ts, c = 0, b = bucket_of(ts)}
        local prev = latest[f]
        if prev == nil then prev = impression(user, item, ts) end
        if not prev or ts >= prev.t then latest[f] = rec end
        sub(imps_dirty, rec.b)[f] = rec
      end
    else
      interactions = interactions + 1
      if typ == 'rate' or typ == 'like' or typ == 'dislike' then explicit = explicit + 1 end
      if strength ~= 0 then
        add(pop, item, strength)
        if seg then add(sub(segpop, seg), item, strength) end
        add(trend, item, strength * math.pow(2, (ts - epoch) / hl))
      end
      local sn = sub(seen, user)
      sn[item] = true
      local rl = sub(recent, user)
      rl[#rl + 1] = item

      -- session pairs: consecutive interactions of one user within the gap, A -> B
      local s = session(user)
      if s.i and s.i ~= item and ts >= s.t and ts - s.t <= cfg.gap then
        add_pair(seg, s.i, item)
      end
      if not s.t or ts >= s.t then
        s.i, s.t = item, ts
      end

      -- basket pairs: purchase lines of one basket, both directions
      local bid = r[8]
      if typ == 'purchase' and bid ~= '' then
        local b = basket(bid)
        if not b.set[item] and b.n < cfg.basket_max then
          for _, other in ipairs(b.list) do
            add_pair(seg, other, item)
            add_pair(seg, item, other)
          end
          b.set[item] = true; b.n = b.n + 1; b.list[#b.list + 1] = item
          local bn = baskets_new[bid]
          bn[#bn + 1] = item
        end
      end

      -- bandit credit: the best reward an impression earned within the window, credited once
      local reward = cfg.rewards[typ]
      local imp = nil
      if reward or typ == 'click' then imp = impression(user, item, ts) end
      if reward and imp and ts >= imp.t and ts - imp.t <= W and reward > imp.c then
        add(rewards, imp.s, reward - imp.c)
        imp.c = reward
        sub(imps_dirty, imp.b)[user .. '\t' .. item] = imp
      end
      if typ == 'click' then
        local strat = r[9]
        if strat == '' then strat = (imp and imp.s) or '_' end
        count_day(day, user, strat .. ':clicks')
      end
    end
    if typ ~= 'impression' then feedback(r, day) end
  end
end

-- --------------------------------------------------------------------------- writes
if not cfg.cluster then
for item, v in pairs(pop) do redis.call('ZINCRBY', K.pop_global, num(v), item) end
for seg, items in pairs(segpop) do
  local k = key(K.pop_seg, seg)
  for item, v in pairs(items) do redis.call('ZINCRBY', k, num(v), item) end
end
for item, v in pairs(trend) do redis.call('ZINCRBY', K.pop_trend, num(v), item) end

local grown = {}
for seg, by_a in pairs(pairs_inc) do
  local fwd, rev = K.pairs_any, K.pairs_rev_any
  if seg ~= 'ANY' then fwd, rev = K.pairs_seg, K.pairs_rev_seg end
  for a, by_b in pairs(by_a) do
    local ka = (seg == 'ANY') and key(fwd, a) or key(fwd, seg, a)
    for b, w in pairs(by_b) do
      if tonumber(redis.call('ZINCRBY', ka, w, b)) == w then grown[ka] = true end
      local kb = (seg == 'ANY') and key(rev, b) or key(rev, seg, b)
      if tonumber(redis.call('ZINCRBY', kb, w, a)) == w then grown[kb] = true end
    end
  end
end
-- a list that gained a member may exceed N: keep its top N, so memory stays bounded however
-- long the stream runs (a list whose members only grew in score cannot have grown in length)
for k in pairs(grown) do
  redis.call('ZREMRANGEBYRANK', k, 0, -(cfg.top_n + 1))
end
end

local function chunked(cmd, k, list)
  for i = 1, #list, CHUNK do
    redis.call(cmd, k, unpack(list, i, math.min(i + CHUNK - 1, #list)))
  end
end

local renew = {}  -- user -> true: renew every per-user key's TTL (first batch of the day)
local created = {}  -- user -> {key = true}: keys this batch may have created (they get the TTL)
for user, items in pairs(seen) do
  local list = {}
  for it in pairs(items) do list[#list + 1] = it end
  chunked('SADD', key(K.seen, user), list)
end
for user, list in pairs(recent) do
  local k = key(K.recent, user)
  local len = 0
  for i = 1, #list, CHUNK do
    len = redis.call('LPUSH', k, unpack(list, i, math.min(i + CHUNK - 1, #list)))
  end
  -- a list as long as what was pushed is new, and so is the seen set written with it
  if len == #list then sub(created, user).history = true end
  -- trimmed once it doubles, not on every push: readers take the first recent_max
  if len > 2 * cfg.recent_max then redis.call('LTRIM', k, 0, cfg.recent_max - 1) end
end
for user, by_type in pairs(counts) do
  local k = key(K.user_counts, user)
  for typ, n in pairs(by_type) do
    -- a field whose new value is this batch's count is new: maybe the whole key (cheap to over-count)
    if redis.call('HINCRBY', k, typ, n) == n then sub(created, user).counts = true end
  end
end
-- every user of the batch gets a session entry in the current bucket (item and time of the last
-- interaction, if any, and the day their keys' TTL was last renewed)
do
  local fields = {}
  for user in pairs(touched) do
    local sn = sessions[user]
    if sn.d ~= today then renew[user] = true; sn.d = today end
    fields[#fields + 1] = user
    fields[#fields + 1] = (sn.i or '') .. '|' .. (sn.t and num(sn.t) or '') .. '|' .. sn.d
  end
  for i = 1, #fields, 2 * CHUNK do
    redis.call('HSET', sess_now, unpack(fields, i, math.min(i + 2 * CHUNK - 1, #fields)))
  end
  if #fields > 0 then redis.call('EXPIRE', sess_now, 2 * cfg.session_bucket_s + 60) end
end
for id, items in pairs(baskets_new) do
  if #items > 0 then
    local k = key(K.basket, id)
    chunked('SADD', k, items)
    redis.call('EXPIRE', k, cfg.basket_ttl)
  end
end
for b, fields in pairs(imps_dirty) do
  local k = key(K.impressions, b)
  local args = {}
  for f, rec in pairs(fields) do
    args[#args + 1] = f
    args[#args + 1] = rec.s .. '|' .. num(rec.t) .. '|' .. num(rec.c)
  end
  for i = 1, #args, 2 * CHUNK do
    redis.call('HSET', k, unpack(args, i, math.min(i + 2 * CHUNK - 1, #args)))
  end
  redis.call('EXPIRE', k, cfg.imp_ttl)
end
if not cfg.cluster then
for arm, n in pairs(pulls) do redis.call('HINCRBY', K.bandit, arm .. ':pulls', n) end
for arm, v in pairs(rewards) do redis.call('HINCRBYFLOAT', K.bandit, arm .. ':rewards', num(v)) end
end
for day, types in pairs(day_types) do
  local fields = sub(day_stats, day)
  for typ, n in pairs(types) do fields['type:' .. typ] = n end
end
-- positive feedback counts once per user, item and day: only pairs not yet in the day's set
for day, found in pairs(positives) do
  local fields, arms = {}, {}
  for f, arm in pairs(found) do fields[#fields + 1] = f; arms[#arms + 1] = arm end
  local k = key(K.positive_day, day)
  local fresh = {}
  for i = 1, #fields, CHUNK do
    local got = redis.call('SMISMEMBER', k, unpack(fields, i, math.min(i + CHUNK - 1, #fields)))
    for j = 1, #got do
      if got[j] == 0 then
        fresh[#fresh + 1] = fields[i + j - 1]
        add(sub(day_stats, day), arms[i + j - 1] .. ':positive', 1)
      end
    end
  end
  if #fresh > 0 then
    chunked('SADD', k, fresh)
    redis.call('EXPIRE', k, cfg.positive_ttl)
  end
end
if not cfg.cluster then
for day, fields in pairs(day_float) do
  local k = key(K.stats_day, day)
  for f, v in pairs(fields) do redis.call('HINCRBYFLOAT', k, f, num(v)) end
end
if #comments > 0 then
  chunked('LPUSH', K.comments, comments)
  redis.call('LTRIM', K.comments, 0, cfg.comments_max - 1)
end
for day, fields in pairs(day_stats) do
  local k = key(K.stats_day, day)
  for f, n in pairs(fields) do redis.call('HINCRBY', k, f, n) end
end
end
for user, fields in pairs(user_stats) do
  local k = key(K.user_stats, user)
  for f, n in pairs(fields) do
    if redis.call('HINCRBY', k, f, n) == n then sub(created, user).stats = true end
  end
end
if not cfg.cluster then
if interactions > 0 then redis.call('INCRBY', K.new_events, interactions) end
if explicit > 0 then redis.call('INCRBY', K.new_feedback, explicit) end
end

-- cache invalidation: drop every cached list of the users touched, then tell the API processes
local users = {}
for user in pairs(invalidate) do users[#users + 1] = user end
for i = 1, #users, CHUNK do
  local idx = {}
  for j = i, math.min(i + CHUNK - 1, #users) do idx[#idx + 1] = key(K.recs_index, users[j]) end
  local cached = redis.call('SUNION', unpack(idx))
  for _, k in ipairs(cached) do idx[#idx + 1] = k end
  chunked('DEL', idx[1], {unpack(idx, 2)})
end
if cfg.invalidated then  -- cluster: one message for the call's groups (a PUBLISH reaches every node)
  for _, user in ipairs(users) do cfg.invalidated[#cfg.invalidated + 1] = user end
elseif #users > 0 then redis.call('PUBLISH', K.invalidate_channel, cjson.encode(users)) end

-- per-user keys of inactive users expire: every write renews the TTL of the keys it touched
if cfg.user_ttl > 0 then
  local function expire(t, user) redis.call('EXPIRE', key(t, user), cfg.user_ttl) end
  for user in pairs(touched) do
    local c = created[user] or {}
    if renew[user] or c.history then expire(K.seen, user); expire(K.recent, user) end
    if renew[user] or c.counts then expire(K.user_counts, user) end
    if renew[user] or c.stats then expire(K.user_stats, user) end
  end
end

-- the bookkeeping last: the batch counts as applied only once every effect above is written
for p, o in pairs(wm_new) do
  local w = wm[p]
  if w == nil or o > w then
    if wm_fp[p] ~= nil then redis.call('HSET', K.watermark, p, o, p .. ':fp', wm_fp[p])
    else redis.call('HSET', K.watermark, p, o) end
  end
end
if cfg.eid_window > 0 then
  local ids = {}
  for eid, typ in pairs(markers) do
    if typ ~= 'impression' then ids[#ids + 1] = eid end
  end
  if #ids > 0 then
    local bk = key(K.event_ids, math.floor(cfg.now / cfg.eid_window))
    chunked('SADD', bk, ids)
    redis.call('EXPIRE', bk, 2 * cfg.eid_window + 60)
  end
end

if cfg.cluster then
  -- the effects on other slots, kept in the outbox with the rest of this call's writes
  local out = {pop = pop, seg = segpop, trend = trend, epoch = epoch, pairs = pairs_inc, pulls = pulls,
               rewards = rewards, day = day_stats, dayf = day_float, comments = comments,
               ne = interactions, nf = explicit}
  local doc = cjson.encode(out)
  if new > 0 then redis.call('HSET', cfg.outbox, cfg.seq, doc) end
  return {new, dups, #users, dropped, doc}
end
return {new, dups, #users, dropped}
end

local cfg = cjson.decode(ARGV[1])
if not cfg.groups then
  return apply(cfg, cjson.decode(ARGV[2]), cjson.decode(ARGV[3] or '[]'))
end
-- cluster: the slot groups of this node, each with its key names (the group's tag in the hole)
local rows, positions = cjson.decode(ARGV[2]), cjson.decode(ARGV[3])
local function tagged(v, g)
  if type(v) == 'table' then
    local t = {}
    for i, part in ipairs(v) do t[i] = (string.gsub(part, '\3', g)) end
    return t
  end
  return (string.gsub(v, '\3', g))
end
local results, invalidated = {}, {}
for gi, g in ipairs(cfg.groups) do
  local keys = setmetatable({}, {__index = cfg.keys})
  for _, name in ipairs(cfg.grouped) do keys[name] = tagged(cfg.keys[name], g) end
  local gcfg = setmetatable({keys = keys, outbox = tagged(cfg.outbox, g), invalidated = invalidated},
                            {__index = cfg})
  results[gi] = apply(gcfg, rows[gi], positions[gi])
end
if #invalidated > 0 then redis.call('PUBLISH', cfg.keys.invalidate_channel, cjson.encode(invalidated)) end
return results
