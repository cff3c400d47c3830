"""`jobledger verify` and `jobledger anchor`: recompute every partition's hash chain and
say where it first breaks, and what broke it (docs/audit.md, "Verify and anchor").

What each finding means:
- missing: an offset has no record (deleted, or the log was cut short of its recorded
  head, or of an anchor);
- reordered: the record that belongs at this offset (its link follows the chain here) is
  found at another offset of the partition;
- changed: the record at this offset does not give the link the chain expects, and no
  record of the partition does;
- bad upcast: the record's bytes are intact, but this build cannot read it (its version
  cannot be upcast, or it is not a valid envelope);
- anchor: the chain does not reach the link an anchor recorded.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from jobledger.schemas.codec import UndecodableRecord, decode
from jobledger.services.audit.source import Head, Row, Slot, Source
from jobledger.services.log.chain import genesis, link

ANCHOR_VERSION = "jobledger-anchor/1"
_PART = re.compile(r"([A-Za-z0-9_.-]+)/(\d+)=(\d+):([0-9a-f]{64})")


@dataclass(frozen=True)
class Finding:
    offset: int
    kind: str  # missing, reordered, changed, bad upcast, anchor
    detail: str


@dataclass
class Checked:
    """One partition's verdict: where its chain stands after `end` records, or the first
    thing wrong with it."""

    slot: Slot
    start: int
    end: int = 0
    head: bytes = b""
    finding: Finding | None = None

    def line(self) -> str:
        name = f"{self.slot[0]}/{self.slot[1]}"
        if self.finding is None:
            return f"{name}  offsets {self.start}..{self.end - 1}  OK  head {self.head.hex()}" \
                if self.end > self.start else f"{name}  no records  OK"
        f = self.finding
        return f"{name}  offset {f.offset}  {f.kind.upper()}: {f.detail}"


@dataclass
class Range:
    """Which offsets to check: a time (datetime), an offset (int) or None (the start, the
    end), applied to every partition."""

    start: datetime | int | None = None
    stop: datetime | int | None = None
    anchor: dict[Slot, Head] = field(default_factory=dict)


Advance = Callable[[int], None]


async def verify(source: Source, want: Range, advance: Advance) -> list[Checked]:
    """Every partition checked, in topic then partition order."""
    ends = await source.ends()
    heads = await source.recorded_heads()
    retained = await source.retained()
    results = []
    for slot in sorted(ends):
        first = retained.start(slot)  # a log cut by --log-retention: checked from the cut
        start = max(await source.offset_at(slot, want.start, 0), first)
        stop = await source.offset_at(slot, want.stop, ends[slot])
        whole = want.stop is None
        results.append(await _partition(source, slot, (first, start), min(stop, ends[slot]),
                                        advance, heads.get(slot) if heads and whole else None,
                                        want.anchor.get(slot)))
    for slot in sorted(set(want.anchor) - set(ends)):
        results.append(Checked(slot, 0, finding=Finding(
            0, "missing", f"the anchor holds {want.anchor[slot].end} records of a partition "
            "this log does not have")))
    return results


async def _partition(source: Source, slot: Slot, starts: tuple[int, int], stop: int,
                     advance: Advance, recorded: Head | None, anchor: Head | None) -> Checked:
    """starts: (the partition's first record kept, where to check from)."""
    first, start = starts
    if anchor is not None and 0 < anchor.end < first:
        return Checked(slot, first, finding=Finding(first, "anchor", f"the anchor holds "
                       f"{anchor.end} records, all before the log's retention cut at {first}: "
                       "the log no longer has them"))
    if anchor is not None:
        start = first
    prev = await source.link_before(slot, start)
    if prev is None:  # the log stores no link before start (Kafka): chain from offset 0
        start, prev = 0, genesis(*slot)
    if anchor is not None and 0 < anchor.end == start and anchor.link != prev:
        return Checked(slot, start, finding=Finding(start - 1, "anchor", "the link recorded "
                       f"at the retention cut is {prev.hex()}, the anchor's "
                       f"{anchor.link.hex()}: the log does not extend the anchor"))
    result = Checked(slot, start, start, prev)
    async for batch in source.rows(slot, start, stop):
        for row in batch:
            finding = await _check(source, result, row, anchor)
            if finding is not None:
                result.finding = finding
                return result
        advance(len(batch))
    result.finding = _at_end(result, stop, recorded, anchor)
    return result


async def _check(source: Source, at: Checked, row: Row, anchor: Head | None) -> Finding | None:
    """Check one record against the chain so far; advance `at` past it if it holds."""
    if row.offset != at.end:
        return Finding(at.end, "missing", f"no record at offsets {at.end}..{row.offset - 1}")
    new = link(at.head, row.offset, row.key, row.value)
    if row.stored is not None and row.stored != new:
        return await _mismatch(source, at, row)
    try:
        decode(row.value)
    except UndecodableRecord as error:
        return Finding(row.offset, "bad upcast", f"the record is intact but cannot be read: "
                       f"{error}")
    at.head, at.end = new, row.offset + 1
    if anchor is not None and anchor.end == at.end and anchor.link != new:
        return Finding(row.offset, "anchor", f"the chain's link here is {new.hex()}, the "
                       f"anchor's {anchor.link.hex()}: the log does not extend the anchor")
    return None


async def _mismatch(source: Source, at: Checked, row: Row) -> Finding:
    """Tell a record moved from a record changed: is the record whose link follows the chain
    at this offset somewhere else in the partition?"""
    assert row.stored is not None
    wanted = {row.stored}
    async for batch in source.rows(at.slot, 0, 2**62):
        for other in batch:
            if other.offset == row.offset:
                continue
            moved = link(at.head, row.offset, other.key, other.value)
            if moved in wanted or moved == other.stored:
                return Finding(row.offset, "reordered", f"the record that belongs here is at "
                               f"offset {other.offset}")
    return Finding(row.offset, "changed", "the record's bytes do not give the link the chain "
                   "stores for it")


def _at_end(at: Checked, stop: int, recorded: Head | None,
            anchor: Head | None) -> Finding | None:
    if at.end < stop:
        return Finding(at.end, "missing", f"no record at offsets {at.end}..{stop - 1}"
                       + (" (the log ends before the chain's recorded head: cut short)"
                          if recorded is not None and recorded.end == stop else ""))
    if anchor is not None and anchor.end > at.end:
        return Finding(at.end, "missing", f"the anchor holds {anchor.end} records, the log "
                       f"{at.end}: records {at.end}..{anchor.end - 1} are gone")
    if recorded is not None and recorded.end == at.end and recorded.link != at.head:
        return Finding(at.end - 1, "changed", "the last record's link differs from the "
                       "chain's recorded head")
    return None


# -- anchors ----------------------------------------------------------------------------


def anchor_line(results: list[Checked], now: datetime | None = None) -> str:
    """One line naming every partition's record count and head link, with a checksum of
    the line, to publish elsewhere."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    parts = " ".join(f"{r.slot[0]}/{r.slot[1]}={r.end}:{r.head.hex()}" for r in results)
    body = f"{ANCHOR_VERSION} {stamp} {parts}"
    return f"{body} sum={_sum(body)}"


def parse_anchor(line: str) -> dict[Slot, Head]:
    """The heads of an anchor line; ValueError naming what is wrong with it."""
    body, _, total = line.strip().rpartition(" sum=")
    words = body.split()
    if len(words) < 2 or words[0] != ANCHOR_VERSION:
        raise ValueError(f"--anchor: not a {ANCHOR_VERSION} line (run `jobledger anchor`)")
    if total != _sum(body):
        raise ValueError("--anchor: the line's checksum does not match: it was changed or "
                         "cut when copied")
    heads: dict[Slot, Head] = {}
    for word in words[2:]:
        match = _PART.fullmatch(word)
        if match is None:
            raise ValueError(f"--anchor: {word[:40]!r} is not topic/partition=count:link")
        topic, part, end, head = match.groups()
        heads[(topic, int(part))] = Head(int(end), bytes.fromhex(head))
    return heads


def _sum(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:16]
