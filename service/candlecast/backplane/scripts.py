"""The backplane's Lua scripts: every write the ingest makes, and the edge's snapshot read.

Each script runs atomically in Redis, so a stream entry, the per-symbol bars and the stream's
metadata never disagree, and a write is refused unless the caller holds the lease (fencing). The
keys a script touches beyond ``KEYS`` are the per-symbol bar keys (``<prefix>:bars:<symbol>``): the
backplane needs a standalone Redis (or a primary with replicas), not Redis Cluster.

Data shapes (``P`` is ``--redis-prefix``):

- ``P:stream``: the Stream. Entry id ``<epoch>-<seq>`` is chosen by the ingest (not by Redis):
  the epoch names one continuous sequence, ``seq`` counts every candle the ingest stamped.
  Fields ``c`` (the candle's JSON, the client frame) and ``p`` (publish time, epoch microseconds).
- ``P:meta``: hash ``epoch``, ``seq``: the last entry written (the stream's top).
- ``P:bars:<stream>``: sorted set of the last ``--history`` bars of one hub stream (a symbol, or
  ``S@i`` for interval history the source loaded), score = the bar's
  open time, member = its JSON; updated by the hub's rule (newer bar appended, same bar replaced,
  an older bar fixed in place only while it is kept). ``P:symbols``: set of those streams.
- ``P:lease`` = the leader's fencing token ``<n>:<instance>``; ``P:fence``: the counter ``n``.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ACQUIRE", "PUBLISH", "REBASE", "RENEW", "RESEED", "SNAPSHOT"]

# Shared by PUBLISH and RESEED: the hub's bar rule on one symbol's sorted set.
_BAR = """
local function bar(key, ot, text, history)
  local n = tonumber(ot)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #last == 0 or n > tonumber(last[2]) then
    redis.call('ZADD', key, ot, text)
    redis.call('ZREMRANGEBYRANK', key, 0, -(history + 1))
  elseif n == tonumber(last[2]) or redis.call('ZCOUNT', key, ot, ot) > 0 then
    redis.call('ZREMRANGEBYSCORE', key, ot, ot)
    redis.call('ZADD', key, ot, text)
  end
end
"""

#: KEYS lease, meta, stream, symbols. ARGV token, epoch, maxlen, history, bar key prefix, then
#: per entry: id, seq, symbol, ot, candle JSON, publish time.
#: Returns {'OK', stream length} | {'NOLEASE'} | {'FENCED', holder} | {'RESEED'} | {'EPOCH', epoch}
#: | {'BEHIND', seq} (the stream is ahead of the caller: another leader wrote meanwhile).
PUBLISH: Final = (
    _BAR
    + """
local holder = redis.call('GET', KEYS[1])
if not holder then return {'NOLEASE'} end
if holder ~= ARGV[1] then return {'FENCED', holder} end
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'seq')
if not meta[1] then return {'RESEED'} end
if meta[1] ~= ARGV[2] then return {'EPOCH', meta[1]} end
if #ARGV >= 7 and tonumber(ARGV[7]) <= tonumber(meta[2]) then return {'BEHIND', meta[2]} end
local maxlen, history, prefix = ARGV[3], tonumber(ARGV[4]), ARGV[5]
local seq
for i = 6, #ARGV, 6 do
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, ARGV[i], 'c', ARGV[i + 4], 'p', ARGV[i + 5])
  bar(prefix .. ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], history)
  redis.call('SADD', KEYS[4], ARGV[i + 2])
  seq = ARGV[i + 1]
end
if seq then redis.call('HSET', KEYS[2], 'seq', seq) end
return {'OK', redis.call('XLEN', KEYS[3])}
"""
)

#: After Redis came back empty: the leader writes back what a new edge needs and what an edge
#: that was reading may not have read yet. KEYS lease, meta, stream, symbols. ARGV token, epoch,
#: seq, maxlen, history, bar key prefix, number of bars, bars (symbol, ot, JSON)..., then the
#: retained entries (id, JSON, publish time)... Returns {'OK'} | {'EXISTS'} | {'FENCED', holder}.
RESEED: Final = (
    _BAR
    + """
local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then return {'FENCED', holder or ''} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'EXISTS'} end
local maxlen, history, prefix, nbars = ARGV[4], tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local i = 8
for _ = 1, nbars do
  bar(prefix .. ARGV[i], ARGV[i + 1], ARGV[i + 2], history)
  redis.call('SADD', KEYS[4], ARGV[i])
  i = i + 3
end
while i <= #ARGV do
  redis.pcall('XADD', KEYS[3], 'MAXLEN', '~', maxlen, ARGV[i], 'c', ARGV[i + 1], 'p', ARGV[i + 2])
  i = i + 3
end
redis.call('HSET', KEYS[2], 'epoch', ARGV[2], 'seq', ARGV[3])
return {'OK'}
"""
)

#: After an entry the ingest never wrote took the stream's top (every XADD below it fails), the
#: leader continues in a new epoch above it. KEYS lease, meta. ARGV token, old epoch, new epoch.
#: Returns {'OK'} | {'FENCED', holder} | {'EPOCH', epoch} (the stream moved on meanwhile).
REBASE: Final = """
local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then return {'FENCED', holder or ''} end
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if epoch ~= ARGV[2] then return {'EPOCH', epoch or ''} end
redis.call('HSET', KEYS[2], 'epoch', ARGV[3])
return {'OK'}
"""

#: KEYS meta, symbols. ARGV bar key prefix. Returns {} when there is no backplane data, else
#: {epoch, seq, {symbol, ...}, {{bar JSON, ...}, ...}}: the bars and the position they belong to.
SNAPSHOT: Final = """
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
if not meta[1] then return {} end
local symbols = redis.call('SMEMBERS', KEYS[2])
local bars = {}
for i, s in ipairs(symbols) do bars[i] = redis.call('ZRANGE', ARGV[1] .. s, 0, -1) end
return {meta[1], meta[2], symbols, bars}
"""

#: KEYS lease, fence. ARGV instance, ttl ms. Takes the lease when nobody holds it, with a new
#: token. Returns the holder's token (the caller's own when it got it).
ACQUIRE: Final = """
local holder = redis.call('GET', KEYS[1])
if holder then return holder end
local token = redis.call('INCR', KEYS[2]) .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return token
"""

#: KEYS lease, fence. ARGV token, instance, ttl ms. Extends the caller's lease; takes it back with
#: a new token when it is missing (Redis restarted empty). Returns the holder's token.
RENEW: Final = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return holder
end
if holder then return holder end
local token = redis.call('INCR', KEYS[2]) .. ':' .. ARGV[2]
redis.call('SET', KEYS[1], token, 'PX', ARGV[3])
return token
"""
