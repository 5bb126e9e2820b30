"""CowTable: a frozen view never changes, whatever the table does after; the table itself
behaves as a dict."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from evcam.state.cowtable import CowTable

keys = st.text(alphabet="abcdefghij", min_size=1, max_size=3)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), keys, st.integers()),
        st.tuples(st.just("pop"), keys, st.none()),
        st.tuples(st.just("freeze"), st.none(), st.none()),
        st.tuples(st.just("clear"), st.none(), st.none()),
    ),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(ops=ops, expected=st.sampled_from([0, 100, 1000]))
def test_frozen_views_equal_the_table_at_freeze_time_forever(
    ops: list[tuple[str, Any, Any]], expected: int
) -> None:
    """Each view equals a dict copy made at freeze time, after any later writes and clears."""
    table, model = CowTable(expected), {}
    views: list[tuple[Any, dict[str, int]]] = []
    for op, key, value in ops:
        if op == "set":
            table[key] = model[key] = value
        elif op == "pop":
            assert table.pop(key, "gone") == model.pop(key, "gone")
        elif op == "freeze":
            views.append((table.freeze(), dict(model)))
        else:
            table.clear()
            model.clear()
        assert len(table) == len(model) and sorted(table) == sorted(model)
        for view, then in views:
            assert dict(view.items()) == then and len(view) == len(then)
            assert all(view[k] == v and k in view and view.get(k) == v for k, v in then.items())


def test_table_spreads_a_large_bound_over_many_buckets() -> None:
    """A table sized for 100,000 entries freezes in O(buckets), buckets of a few dozen."""
    table = CowTable(100_000)
    assert 1024 <= len(table._buckets) <= 4096
