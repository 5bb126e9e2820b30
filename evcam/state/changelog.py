"""The change log: which tasks changed since a shot, at the cost of what changed.

A camera asks each snapshot for the tasks changed since the last shot it stored
(`Snapshot.changed_tasks(since_seq)`). Scanning every task kept would cost what is kept, not
what changed. Instead the event path appends the uuid of every task whose `_seq` it sets (one
append per accepted task event, one more when a child changes its parent), and each snapshot
records a mark, `(seq, position)`: every change after `seq` was logged at or after
`position`. A reader takes the tail after the latest mark at or before its `since_seq`, and
keeps the tasks whose `_seq` is greater: the log only narrows the candidates, `_seq` decides.

The log is bounded: past `cap` entries it is compacted to the last entry of each task still
in memory, in the same order, and every mark is moved to the first entry logged after it (the
entries after a mark form a suffix of the compacted log). Compaction makes a new list, so a
snapshot keeps reading the list it was taken with. A `since_seq` older than every mark is
answered by a full scan (`ChangeView.candidates` returns None).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Container, Iterable
from typing import Any

#: Entries the log may hold per task in memory before it is compacted.
LOG_FACTOR = 4
#: Marks kept: a reader asking about an older shot gets a full scan.
MAX_MARKS = 64
_AFTER_ANY_POSITION = float("inf")


class ChangeView:
    """The log as a snapshot saw it: `entries[:end]` and the marks up to its own."""

    __slots__ = ("end", "entries", "marks")

    def __init__(self, entries: list[str], end: int, marks: tuple[tuple[int, int], ...]) -> None:
        self.entries = entries
        self.end = end
        self.marks = marks

    def candidates(self, since_seq: int) -> Iterable[str] | None:
        """The uuids (each once) of every task that may have changed after `since_seq`,
        or None when no mark is that old (then only a full scan can tell)."""
        marks = self.marks
        index = bisect_right(marks, (since_seq, _AFTER_ANY_POSITION)) - 1
        if index < 0:
            return None
        return dict.fromkeys(self.entries[marks[index][1] : self.end])


class ChangeLog:
    """The uuids of changed tasks in the order they changed, with the marks of the shots."""

    __slots__ = ("cap", "entries", "marks")

    def __init__(self, max_tasks: int) -> None:
        self.cap = LOG_FACTOR * max(1, max_tasks)
        self.entries: list[str] = []
        # Nothing is logged before the first event: seq 0 starts at the log's start.
        self.marks: tuple[tuple[int, int], ...] = ((0, 0),)

    def view(self, seq: int) -> ChangeView:
        """Mark the shot taken at `seq` (under the state's lock) and return what it sees."""
        entries, marks = self.entries, self.marks
        end = len(entries)
        if marks[-1][0] != seq:
            marks = (*marks[-(MAX_MARKS - 1) :], (seq, end))
            self.marks = marks
        return ChangeView(entries, end, marks)

    def reset(self, seq: int) -> None:
        """Forget the marks: the tasks changed behind the state's back, so no tail before
        `seq` can be trusted (readers asking about an older shot get a full scan). The list
        itself stays: the event path appends to it, and snapshots read it."""
        self.marks = ((seq, len(self.entries)),)

    def compact(self, alive: Container[Any]) -> list[str]:
        """Keep the last entry of each task in `alive`, in order; move the marks; return the
        new list (the old one stays as the snapshots taken with it saw it)."""
        entries = self.entries
        kept = [uuid for uuid in dict.fromkeys(reversed(entries)) if uuid in alive]
        kept.reverse()
        # A mark at old position p moves to the first kept entry whose last occurrence is at
        # or after p: len(kept) minus the kept uuids logged at or after p (counted once each,
        # walking the marks from the newest).
        seen: set[str] = set()
        later = 0
        end = len(entries)
        moved = []
        for seq, position in reversed(self.marks):
            if position == 0:  # every kept entry was logged after it: it stays at the start
                moved.append((seq, 0))
                continue
            if position < end:
                new = set(entries[position:end])
                new -= seen
                later += sum(1 for uuid in new if uuid in alive)
                seen |= new
                end = position
            moved.append((seq, len(kept) - later))
        self.marks = tuple(reversed(moved))
        self.entries = kept
        return kept
