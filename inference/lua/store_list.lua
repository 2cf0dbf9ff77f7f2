-- Store a computed home list, only if no invalidation came since its state was read.
--
-- home.lua added ARGV[1] (``Keys.recs_pending``) to the user's recs index in the same call that
-- read the state the list was computed from. The stream agents' invalidation deletes the index
-- with every list in it (streams/lua/apply_interactions.lua), the pending member included; so
-- when the member is gone, an event of the user was applied after that read and the list is stale.
-- Both keys carry the user's hash tag in cluster mode: one slot.
--
-- KEYS: the user's recs index, the list's key
-- ARGV: pending member, list body, TTL in seconds
-- Returns 1 when stored, 0 when the list was stale (nothing written).
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
redis.call('SADD', KEYS[1], KEYS[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
