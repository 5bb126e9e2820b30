"""A task of the cluster, and the merge rule every task event goes through.

Celery's `Task` API (`event`, `info`, `as_dict`, `ready`, the links `parent`, `root`,
`children` resolved in the state the task belongs to), with every event field as an attribute.
`merge_event` is the one statement of how an event changes a task: the state's event path
and `Task.event` (which subclasses may extend) both apply it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from evcam.state.lru import TaskSet, backing
from evcam.states import (
    CUSTOM_PRECEDENCE,
    PENDING,
    PRECEDENCE,
    READY_STATES,
    RECEIVED,
    RETRY,
    TASK_EVENT_TO_STATE,
)

#: `_born` of a task that did not come from an event: older than any event.
NEVER = -(1 << 62)
#: Precedence of each named state (`.get(state, CUSTOM_PRECEDENCE)`: lower wins).
_rank = {name: index for index, name in enumerate(PRECEDENCE) if name is not None}.get


class TaskOwner(Protocol):
    """What a task expects of the state it belongs to (`cluster_state`): its task map."""

    @property
    def tasks(self) -> Mapping[str, Any]: ...


def reserved_task_names(task_cls: type[Task]) -> frozenset[str]:
    """Names of `task_cls` that an event field must not shadow: methods, properties, slots
    and class internals (`info`, `as_dict`, `_lookup`, `_fields`, ...), not the data fields."""
    return frozenset(name for name in dir(task_cls) if not name.startswith("__")) - frozenset(
        task_cls._fields
    )


def merge_event(
    d: dict[str, Any],
    subject: str,
    known: bool,
    state: str,
    timestamp: Any,
    fields: dict[str, Any],
    merge_rules: Mapping[str, tuple[str, ...]],
) -> None:
    """The merge rule of a task event, applied to the task's `__dict__` `d`.

    A known `subject` records its time. An event whose `state` ranks below the current one
    (it logically happened before) never moves the task backwards: it contributes only the
    fields `merge_rules` keep for that state (all of them for a state without a rule).
    Otherwise, as in Celery, `state` and `timestamp` are added to `fields` and all of them
    are applied. RETRY is never merged: a retried task may go back to any state.
    """
    if known:
        d[subject] = timestamp
    current = d.get("state", PENDING)
    if (
        state != RETRY
        and current != RETRY
        and _rank(state, CUSTOM_PRECEDENCE) > _rank(current, CUSTOM_PRECEDENCE)
    ):
        keep = merge_rules.get(state)
        if keep is not None:
            for key in keep:
                if key in fields:
                    d[key] = fields[key]
            return
    else:
        fields["state"] = state
        fields["timestamp"] = timestamp
    d.update(fields)


def depickle_task(cls: type[Task], fields: dict[str, Any]) -> Task:
    """Rebuild a pickled task (`Task.__reduce__`)."""
    return cls(**fields)


class Task:
    """A task, identified (hashed and compared) by uuid.

    Every key of every applied event becomes an attribute, as in Celery. The links that the
    state owns (`worker`, `children`, `cluster_state`) live in slots, so an event field of the
    same name cannot clobber them.
    """

    name = received = sent = started = succeeded = failed = retried = None
    revoked = rejected = args = kwargs = eta = expires = retries = None
    result = exception = timestamp = runtime = traceback = None
    exchange = routing_key = root_id = parent_id = client = uuid = None
    state = PENDING
    clock = 0

    _fields = (
        "uuid",
        "name",
        "state",
        "received",
        "sent",
        "started",
        "rejected",
        "succeeded",
        "failed",
        "retried",
        "revoked",
        "args",
        "kwargs",
        "eta",
        "expires",
        "retries",
        "worker",
        "result",
        "exception",
        "timestamp",
        "runtime",
        "traceback",
        "exchange",
        "routing_key",
        "clock",
        "client",
        "root",
        "root_id",
        "parent",
        "parent_id",
        "children",
    )
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_at",
        "_born",
        "_children",
        "_gen",
        "_idx",
        "_seq",
        "cluster_state",
        "worker",
    )

    #: Fields an out-of-order event of that state may still contribute.
    merge_rules: dict[str, tuple[str, ...]] = {
        RECEIVED: ("name", "args", "kwargs", "parent_id", "root_id", "retries", "eta", "expires"),
    }

    #: Fields `info()` shows by default.
    _info_fields = (
        "args",
        "kwargs",
        "retries",
        "result",
        "eta",
        "runtime",
        "expires",
        "exception",
        "exchange",
        "routing_key",
        "root_id",
        "parent_id",
    )

    def __init__(
        self,
        uuid: str | None = None,
        cluster_state: TaskOwner | None = None,
        children: Any = None,
        **kwargs: Any,
    ) -> None:
        self.uuid = uuid
        self.cluster_state = cluster_state
        self.worker = kwargs.pop("worker", None)
        kwargs.pop("parent", None)  # derived from parent_id / root_id
        kwargs.pop("root", None)
        self._children: set[str] | None = (
            {getattr(child, "uuid", child) for child in children} if children else None
        )
        self._seq = 0
        self._at = 0
        self._gen = 0
        self._born = NEVER
        self._idx: tuple[str | None, str | None] | None = None
        if kwargs:
            self.__dict__.update(kwargs)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, self.__class__):
            return self.uuid == other.uuid
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.uuid)

    def event(
        self,
        type_: str,
        timestamp: float | None = None,
        local_received: float | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        """Apply a task event with Celery's precedence and merge rules.

        Like Celery, this adds `state` and `timestamp` to `fields` when the event moves the
        task's state.
        """
        state = TASK_EVENT_TO_STATE.get(type_)
        merge_event(
            self.__dict__,
            type_,
            state is not None,
            state or type_.upper(),
            timestamp,
            fields or {},
            self.merge_rules,
        )

    def info(self, fields: Any = None, extra: Any = None) -> dict[str, Any]:
        """The non-None values of `fields` (default `_info_fields`) plus `extra`."""
        keys = list(self._info_fields if fields is None else fields) + list(extra or [])
        out = {}
        for key in keys:
            value = getattr(self, key, None)
            if value is not None:
                out[key] = value
        return out

    def as_dict(self) -> dict[str, Any]:
        """Every field of `_fields`; links become ids (`children`, `parent`, `root`)."""
        out: dict[str, Any] = {}
        for key in self._fields:
            if key == "children":
                out[key] = [task.uuid for task in self.children]
            elif key == "parent":
                out[key] = self.parent_id
            elif key == "root":
                out[key] = self.root_id
            else:
                out[key] = getattr(self, key)
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        return depickle_task, (self.__class__, self.as_dict())

    def __repr__(self) -> str:
        return f"<Task: {self.name}({self.uuid}) {self.state} clock:{self.clock}>"

    @property
    def id(self) -> str | None:
        return self.uuid

    @property
    def origin(self) -> str | None:
        return self.client if self.worker is None else self.worker.id

    @property
    def ready(self) -> bool:
        return self.state in READY_STATES

    def _lookup(self, uuid: str | None) -> Task | None:
        state = self.cluster_state
        if not uuid or state is None:
            return None
        return backing(state.tasks).get(uuid)

    @property
    def parent(self) -> Task | None:
        """The parent task, if it is in the same state (looked up each time, never cached)."""
        return self._lookup(self.parent_id)

    @property
    def root(self) -> Task | None:
        """The root task, if it is in the same state (looked up each time, never cached)."""
        return self._lookup(self.root_id)

    @property
    def children(self) -> TaskSet:
        """The child tasks seen so far that are still in the same state."""
        ids = self._children
        state = self.cluster_state
        if not ids or state is None:
            return TaskSet()
        data = backing(state.tasks)
        return TaskSet(task for task in map(data.get, ids) if task is not None)
