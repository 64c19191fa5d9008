"""Every key the service writes in Redis, in one place: the online store, the decision log and the health check
build their keys here, and so do the tests that look at what was written.

Key layout (prefix "nba:" by default):
  customer:{customer_id}            hash: feature -> value as text, plus _written_at / _updated_at (epoch seconds)
  contact-counts:{customer_id}      hash, the contact counts contact policies read (features/contact_history.py):
                                    "{h|d}|{event}|{action or follow-up}|{touchpoint}" -> running totals per
                                    hour (49 kept) and UTC day (91 kept); offers made and follow-ups sent
                                    (written with the decision), declines (written with the outcome); expires
                                    when the customer has had no contact for 91 days. (The sorted sets
                                    contact:{customer_id} of earlier versions are no longer read; they expire.)
  decision:{decision_id}            the decision, packed (records.pack), for retries and outcomes (expires with
                                    decision_ttl)
  outcome:{decision_id}:{action_id} "{outcome}|{stream id}" of the outcome stored: the same outcome again is a
                                    duplicate (not stored twice); IGNORED may be superseded by ACCEPTED or
                                    DECLINED (a new stream entry, with a "supersedes" field); ACCEPTED and
                                    DECLINED are final. A bare stream id (written before) answers duplicate.
  capacity:{action_id}:{pool}       units left in a pool ({flight}:{YYYY-MM-DD}); created from the catalogue on
                                    first use, expires with the pool (CapacityClaim.expires_at)
  capacity-holders:{action_id}:{pool}   the customers holding one unit of the pool (a set); expires with it
  log:decisions, log:outcomes, log:follow-ups   the streams data scientists retrain from; the log shipper moves
                                    them to Parquet files and trims what it shipped
  log-shipper                       the log shipper's state as JSON: per stream its watermark (last id shipped),
                                    last shipped at, entries not shipped yet, age of the oldest of them
  log-shipper:lease                 which shipper ships (SET NX PX, renewed): one at a time per Redis
  health:{host}:{pid}               a server process's short-lived health write (decision/health.py)

A key name given ``*`` in place of an id is a pattern for SCAN and KEYS.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "nba:"


@dataclass(frozen=True)
class KeyLayout:
    """The keys under one prefix; see the module docstring for what each holds."""

    prefix: str = DEFAULT_PREFIX

    def customer(self, customer_id: str) -> str:
        return f"{self.prefix}customer:{customer_id}"

    def contacts(self, customer_id: str) -> str:
        return f"{self.prefix}contact-counts:{customer_id}"

    def decision(self, decision_id: str) -> str:
        return f"{self.prefix}decision:{decision_id}"

    def outcome(self, decision_id: str, action_id: str) -> str:
        return f"{self.prefix}outcome:{decision_id}:{action_id}"

    def capacity(self, action_id: str, pool: str) -> str:
        return f"{self.prefix}capacity:{action_id}:{pool}"

    def capacity_holders(self, action_id: str, pool: str) -> str:
        return f"{self.prefix}capacity-holders:{action_id}:{pool}"

    @property
    def decisions_stream(self) -> str:
        return f"{self.prefix}log:decisions"

    @property
    def outcomes_stream(self) -> str:
        return f"{self.prefix}log:outcomes"

    @property
    def follow_ups_stream(self) -> str:
        return f"{self.prefix}log:follow-ups"

    @property
    def log_shipper(self) -> str:
        return f"{self.prefix}log-shipper"

    @property
    def log_shipper_lease(self) -> str:
        return f"{self.prefix}log-shipper:lease"

    def health(self, host: str, pid: int) -> str:
        return f"{self.prefix}health:{host}:{pid}"
