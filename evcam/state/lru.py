"""Small containers the state model is built from: a bounded LRU mapping, a frozen mapping,
a task set keyed by uuid, and the index mapping that is also callable (Celery's API)."""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, MutableSet
from typing import Any


class _DictBacked(Mapping):
    """The reads that go straight to the backing dict `data` (recency is not refreshed)."""

    __slots__ = ("data",)

    data: dict[Any, Any]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def keys(self):  # type: ignore[override]
        return self.data.keys()

    def values(self):  # type: ignore[override]
        return self.data.values()

    def items(self):  # type: ignore[override]
        return self.data.items()


def backing(mapping: Mapping[Any, Any]) -> Mapping[Any, Any]:
    """The dict behind an LRU or a FrozenMap (its reads never refresh recency); any other
    mapping (a plain dict a test assigned to `state.tasks`, say) as it is."""
    return mapping.data if isinstance(mapping, _DictBacked) else mapping


class LRU(_DictBacked, MutableMapping):
    """A mapping that keeps at most `limit` keys, forgetting the least recently used first.

    Like kombu's `LRUCache` (which Celery's State uses) it exposes the underlying OrderedDict as
    `data` and a read through `[]` or `get` refreshes recency; iteration does not. The state
    refreshes recency on every event through `data.move_to_end`. `on_evict(key, value)` is called
    for every key pushed out by the bound.
    """

    __slots__ = ("limit", "mirror", "on_evict")

    def __init__(
        self,
        limit: int | None = None,
        items: Iterable[tuple[Any, Any]] = (),
        on_evict: Callable[[Any, Any], None] | None = None,
    ) -> None:
        self.limit = limit
        self.on_evict = on_evict
        #: A plain dict kept equal to `data` through this mapping's writes (the owner keeps it
        #: so through its own, and through `on_evict`); None when nobody needs one.
        self.mirror: Any = None
        self.data: OrderedDict[Any, Any] = OrderedDict()
        for key, value in items:
            self[key] = value

    def __getitem__(self, key: Any) -> Any:
        value = self.data[key]
        self.data.move_to_end(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        data = self.data
        if key not in data:
            limit = self.limit
            while limit and len(data) >= limit:
                old_key, old_value = data.popitem(last=False)
                if self.on_evict is not None:
                    self.on_evict(old_key, old_value)
        data[key] = value
        if self.mirror is not None:
            self.mirror[key] = value

    def __delitem__(self, key: Any) -> None:
        del self.data[key]
        if self.mirror is not None:
            self.mirror.pop(key, None)

    def __repr__(self) -> str:
        return f"LRU(limit={self.limit!r}, size={len(self.data)})"

    def __reduce__(self) -> tuple[Any, ...]:
        # on_evict is wiring, not data: the owner sets it again after unpickling.
        return (type(self), (self.limit, list(self.data.items())))


class FrozenMap(_DictBacked):
    """A read-only mapping over a plain dict (`data`), used for snapshot contents."""

    __slots__ = ()

    def __init__(self, data: dict[Any, Any]) -> None:
        self.data = data

    def __getitem__(self, key: Any) -> Any:
        return self.data[key]

    def get(self, key: Any, default: Any = None) -> Any:
        return self.data.get(key, default)

    def __repr__(self) -> str:
        return f"FrozenMap(size={len(self.data)})"


class TaskSet(MutableSet):
    """A set of tasks keyed by uuid (Celery uses a WeakSet; the state removes evicted tasks)."""

    __slots__ = ("data",)

    def __init__(self, tasks: Iterable[Any] = ()) -> None:
        self.data: dict[str, Any] = {task.uuid: task for task in tasks}

    def __contains__(self, task: object) -> bool:
        uuid = getattr(task, "uuid", None)
        return uuid is not None and self.data.get(uuid) is task

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self.data.values()))

    def __len__(self) -> int:
        return len(self.data)

    def add(self, task: Any) -> None:
        self.data[task.uuid] = task

    def discard(self, task: Any) -> None:
        uuid = task.uuid
        if self.data.get(uuid) is task:
            del self.data[uuid]

    def __repr__(self) -> str:
        return f"TaskSet({sorted(self.data)!r})"


class CallableIndex(defaultdict):
    """`index[key]` is the set of tasks under key; `index(key, ...)` runs the ordered query."""

    def __init__(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.fun = fun
        super().__init__(TaskSet, *args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fun(*args, **kwargs)


class LazyMap(Mapping):
    """A read-only mapping over `table` whose values are `make(table[key])`, made on first
    read and kept (so a key always gives the same object), iterated in `order(value)` order.

    Snapshots use it: under the lock they only copy `table`, a plain dict, at C speed; each
    task is then built, outside the lock, when a reader first asks for it, and the order is
    sorted out only when a reader iterates. `data` is the map itself, so `backing()` users and
    code reading `.data` see the same values.
    """

    __slots__ = ("_made", "_make", "_order", "_ordered", "table")

    def __init__(
        self,
        table: Mapping[Any, Any],
        make: Callable[[Any], Any],
        order: Callable[[Any], Any] | None = None,
    ) -> None:
        self.table = table
        self._make = make
        self._order = order
        self._ordered: list[Any] | None = None if order is not None else list(table)
        self._made: dict[Any, Any] = {}

    @property
    def data(self) -> LazyMap:
        return self

    def _keys(self) -> list[Any]:
        keys = self._ordered
        if keys is None:
            order, table = self._order, self.table
            assert order is not None
            ranked = sorted(table.items(), key=lambda item: order(item[1]))
            keys = self._ordered = [key for key, _ in ranked]
        return keys

    def __getitem__(self, key: Any) -> Any:
        made = self._made.get(key)
        if made is None:
            # setdefault: two readers racing on one key still get one object.
            made = self._made.setdefault(key, self._make(self.table[key]))
        return made

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return key in self.table

    def __iter__(self) -> Iterator[Any]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self.table)

    def keys(self) -> list[Any]:  # type: ignore[override]
        return list(self._keys())

    def values(self) -> list[Any]:  # type: ignore[override]
        get = self.__getitem__
        return [get(key) for key in self._keys()]

    def items(self) -> list[tuple[Any, Any]]:  # type: ignore[override]
        get = self.__getitem__
        return [(key, get(key)) for key in self._keys()]

    def __repr__(self) -> str:
        return f"LazyMap(size={len(self.table)}, made={len(self._made)})"
