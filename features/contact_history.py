"""A customer's contact history as bounded counters: what the contact policies count, at a cost that does not grow
with the history.

The rules count contacts in windows: declines of an action in 30 days, offers in a 4-hour visit, offers at a
touchpoint in a day, follow-ups of a kind sent in 30 days (``Counter``, compiled from the rule files). Keeping every
event and counting them per decision made a customer met thousands of times slower at every decision. Instead the
history is kept as counts per time bucket (hours or days since the epoch, UTC), one text field per (resolution,
event, action or follow-up kind, touchpoint), e.g. ``"h|offered||CHECKIN_KIOSK"``. Each event adds to three fields
per resolution: the event kind alone, narrowed to its action, and narrowed to its touchpoint. A field never holds
more buckets than its resolution keeps (49 hours, 91 days).

A field's value is fixed-width hexadecimal, so a counter is read with two binary searches and two numbers, never
by parsing the whole field: 8 digits of ``base`` (the count before the first bucket kept), then per bucket, oldest
first, 6 digits of the bucket number and 8 of the running total up to and including it. The count of a window
is the running total at its last bucket less the one before its first.

How a window is counted: a window of up to 48 hours in hours, a longer one (up to 90 days) in UTC days; every
bucket the window touches counts whole. So ``offers_4h`` at 10:20 counts the offers made since 06:00, and
``declines_30d`` on 3 March counts those since the start of 1 February: a count is never lower than the exact
count over the window, and at most one bucket's worth higher. A contact policy errs towards asking less.

The same counting serves the Redis store (``CONTACT_ADD_LUA``, run inside the decision log's scripts, where a retried
write is recognised and counted once) and the in-process store and the rule scenarios (``ContactBuckets``).
"""

from __future__ import annotations

import bisect
from collections import Counter as Tally
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

HOUR_S = 3600
DAY_S = 86_400
# The longest window counted in hours; longer windows are counted in days.
HOURLY_UP_TO_S = 48 * HOUR_S
# The longest window a counter may have (the rule compiler refuses longer ones).
MAX_WINDOW_S = 90 * DAY_S
# Buckets kept behind the current one, per resolution: enough for the longest window counted at that resolution.
HOURS_KEPT = HOURLY_UP_TO_S // HOUR_S
DAYS_KEPT = MAX_WINDOW_S // DAY_S
# The hash expires when the customer has had no contact for longer than the longest window.
EXPIRE_S = MAX_WINDOW_S + DAY_S


@dataclass(frozen=True)
class Contact:
    """One event of a customer's contact history: an action offered or declined, a follow-up sent."""

    event: str  # offered | declined | sent
    name: str  # the action id (offered, declined) or the follow-up kind (sent)
    touchpoint: str  # where it happened (Touchpoint name)
    at: float  # epoch seconds

    def fields(self) -> tuple[str, ...]:
        """The count fields this event adds to, at both resolutions."""
        narrowed = (f"{self.event}||", f"{self.event}|{self.name}|", f"{self.event}||{self.touchpoint}")
        return tuple(f"{resolution}|{suffix}" for resolution in "hd" for suffix in narrowed)


@dataclass(frozen=True)
class Counter:
    """A contact counter a rule reads: how many ``event`` contacts in the last ``window_s`` seconds.

    ``name`` narrows it to one action (declined, offered) or follow-up kind (sent); ``touchpoint`` to offers
    made there. Its value in the fact, under ``key``, is a whole number, 0 when there were none.
    """

    key: str
    event: str  # declined | offered | sent
    window_s: float
    name: str = ""
    touchpoint: str = ""

    @property
    def bucket_s(self) -> int:
        return HOUR_S if self.window_s <= HOURLY_UP_TO_S else DAY_S

    @property
    def field(self) -> str:
        return f"{'h' if self.bucket_s == HOUR_S else 'd'}|{self.event}|{self.name}|{self.touchpoint}"

    def first_bucket(self, now: float) -> int:
        return int((now - self.window_s) // self.bucket_s)


@dataclass(frozen=True)
class ContactQuery:
    """What the counters of a rule set read: the fields to fetch (each once), and how to count each counter."""

    counters: tuple[Counter, ...] = ()
    fields: tuple[str, ...] = field(init=False)
    _field_of: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        fields = tuple(dict.fromkeys(counter.field for counter in self.counters))
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "_field_of", tuple(fields.index(counter.field) for counter in self.counters))

    @property
    def zeros(self) -> dict[str, int]:
        return {counter.key: 0 for counter in self.counters}

    def counts(self, values: Sequence[str | None], now: float) -> dict[str, int]:
        """Each counter's value, from the fetched fields' values (``values[i]`` is ``fields[i]``'s, None if absent)."""
        counts = {}
        for counter, index in zip(self.counters, self._field_of, strict=True):
            value = values[index]
            counts[counter.key] = (
                window_count(value, counter.first_bucket(now), int(now // counter.bucket_s)) if value else 0
            )
        return counts


# A field's value: BASE_DIGITS of base, then per bucket BUCKET_DIGITS of bucket and TOTAL_DIGITS of running total.
BASE_DIGITS, BUCKET_DIGITS, TOTAL_DIGITS = 8, 6, 8
ENTRY = BUCKET_DIGITS + TOTAL_DIGITS


def window_count(value: str, first: int, last: int) -> int:
    """The contacts of buckets ``first`` to ``last`` in a field's value; 0 for a value not in the format."""
    entries, odd = divmod(len(value) - BASE_DIGITS, ENTRY)
    if entries <= 0 or odd:
        return 0

    def bucket_at(k: int) -> str:
        at = BASE_DIGITS + ENTRY * k
        return value[at : at + BUCKET_DIGITS]

    def total_before(k: int) -> int:  # the running total before entry k
        at = BASE_DIGITS + ENTRY * k - TOTAL_DIGITS if k else 0
        return int(value[at : at + TOTAL_DIGITS], 16)

    # Zero-padded lowercase hex compares as its number does.
    start = bisect.bisect_left(range(entries), f"{first:06x}", key=bucket_at)
    end = bisect.bisect_right(range(entries), f"{last:06x}", key=bucket_at)
    try:
        return max(0, total_before(end) - total_before(start)) if end > start else 0
    except ValueError:  # not hexadecimal: a stranger's value
        return 0


def encode(buckets: Mapping[int, int], base: int = 0) -> str:
    """A field's value from its buckets' counts."""
    parts, total = [f"{base:08x}"], base
    for bucket in sorted(buckets):
        total += buckets[bucket]
        parts.append(f"{bucket:06x}{total:08x}")
    return "".join(parts)


def increments(contacts: Iterable[Contact], now: float) -> list[tuple[int, int, list[tuple[str, int]]]]:
    """The writes of some events, grouped by their (hour, day) buckets: [(hour, day, [(field, n), ...]), ...].

    Events too old for any window are left out; events of one decision share their buckets and fields."""
    groups: dict[tuple[int, int], Tally[str]] = {}
    for contact in contacts:
        if contact.at < now - MAX_WINDOW_S - DAY_S:
            continue
        groups.setdefault((int(contact.at // HOUR_S), int(contact.at // DAY_S)), Tally()).update(contact.fields())
    return [(hour, day, sorted(tally.items())) for (hour, day), tally in groups.items()]


def contact_args(contacts: Iterable[Contact], now: float) -> list[Any]:
    """``CONTACT_ADD_LUA``'s ARGV for some events: the buckets kept from, then per group its buckets and fields."""
    groups = increments(contacts, now)
    args: list[Any] = [int(now // HOUR_S) - HOURS_KEPT, int(now // DAY_S) - DAYS_KEPT, len(groups)]
    for hour, day, adds in groups:
        args.extend((hour, day, len(adds)))
        args.extend(item for add in adds for item in add)
    return args


# A Lua function for the decision log's scripts: add_contacts(key, i) adds the events whose ARGV (contact_args)
# start at ARGV[i] to the customer's count hash, and returns the index after them. The common write (the bucket is
# the field's newest) rewrites only the newest running total; any other decodes the field, adds, drops the buckets
# no window reads any more and encodes it again, as ``encode`` does.
CONTACT_ADD_LUA = """
local function decode(text)  -- base, {bucket: count}, buckets in order; nil for a value not in the format
  if (#text - 8) % 14 ~= 0 or not string.match(text, '^%x+$') then return nil end
  local base = tonumber(string.sub(text, 1, 8), 16)
  local previous, counts, order = base, {}, {}
  for at = 9, #text - 13, 14 do
    local b, total = tonumber(string.sub(text, at, at + 5), 16), tonumber(string.sub(text, at + 6, at + 13), 16)
    counts[b], previous = total - previous, total
    order[#order + 1] = b
  end
  return base, counts, order
end

local function add_count(key, field, bucket, n, keep_from)
  local text = redis.call('HGET', key, field) or '00000000'
  local len = #text
  if len >= 22 and tonumber(string.sub(text, len - 13, len - 8), 16) == bucket then
    local total = tonumber(string.sub(text, len - 7), 16)
    if total then
      redis.call('HSET', key, field, string.sub(text, 1, len - 8) .. string.format('%08x', total + n))
      return
    end
  end
  local base, counts, order = decode(text)
  if not base then base, counts, order = 0, {}, {} end  -- a stranger's value: counted afresh
  if not counts[bucket] then
    counts[bucket] = 0
    order[#order + 1] = bucket
  end
  counts[bucket] = counts[bucket] + n
  table.sort(order)
  local parts, total = {}, base
  for _, b in ipairs(order) do
    if b < keep_from then
      base = base + counts[b]
      total = base
    else
      total = total + counts[b]
      parts[#parts + 1] = string.format('%06x%08x', b, total)
    end
  end
  redis.call('HSET', key, field, string.format('%08x', base) .. table.concat(parts))
end

local function add_contacts(key, i)
  local keep_hour, keep_day, groups = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  i = i + 3
  for _ = 1, groups do
    local hour, day, n = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
    i = i + 3
    for j = i, i + 2 * (n - 1), 2 do
      local field = ARGV[j]
      if string.sub(field, 1, 1) == 'h' then
        if hour >= keep_hour then add_count(key, field, hour, tonumber(ARGV[j + 1]), keep_hour) end
      elseif day >= keep_day then
        add_count(key, field, day, tonumber(ARGV[j + 1]), keep_day)
      end
    end
    i = i + 2 * n
  end
  if groups > 0 then redis.call('EXPIRE', key, {expire_s}) end
  return i
end
""".replace("{expire_s}", str(EXPIRE_S))


class ContactBuckets:
    """One customer's counts in this process, kept and counted as the Redis store keeps them."""

    def __init__(self) -> None:
        self._fields: dict[str, tuple[int, dict[int, int]]] = {}  # field -> (base, {bucket: count})

    def add(self, contacts: Iterable[Contact], now: float) -> None:
        keep_hour, keep_day = int(now // HOUR_S) - HOURS_KEPT, int(now // DAY_S) - DAYS_KEPT
        for hour, day, adds in increments(contacts, now):
            for name, n in adds:
                bucket, keep = (hour, keep_hour) if name.startswith("h") else (day, keep_day)
                if bucket < keep:
                    continue
                base, buckets = self._fields.get(name, (0, {}))
                buckets[bucket] = buckets.get(bucket, 0) + n
                base += sum(buckets.pop(old) for old in [b for b in buckets if b < keep])
                self._fields[name] = (base, buckets)

    def values(self, query: ContactQuery) -> list[str | None]:
        """The fetched fields' values, as Redis would answer HMGET."""
        return [
            encode(self._fields[name][1], self._fields[name][0]) if name in self._fields else None
            for name in query.fields
        ]

    def counts(self, query: ContactQuery, now: float) -> dict[str, int]:
        return query.counts(self.values(query), now)


def count_contacts(contacts: Iterable[Contact], query: ContactQuery, now: float) -> dict[str, int]:
    """Each counter's value over a list of events (a rule scenario's given history), counted as the stores do."""
    buckets = ContactBuckets()
    buckets.add(contacts, now)
    return buckets.counts(query, now)
