"""Task state names and precedence match Celery's celery.states."""

from __future__ import annotations

import pytest
from celery import states as celery_states

from evcam import states

NAMES = [
    "PENDING",
    "RECEIVED",
    "STARTED",
    "SUCCESS",
    "FAILURE",
    "REVOKED",
    "REJECTED",
    "RETRY",
    "IGNORED",
    "PROGRESS",
    "UNKNOWN-EVENT-XXX",
    None,
]


@pytest.mark.parametrize("name", NAMES)
def test_precedence_matches_celery(name: str | None) -> None:
    """Every built-in, custom and missing state ranks exactly as Celery ranks it."""
    assert states.precedence(name) == celery_states.precedence(name)


def test_state_sets_match_celery() -> None:
    """READY, UNREADY, EXCEPTION, PROPAGATE and ALL state sets equal Celery's."""
    assert states.READY_STATES == celery_states.READY_STATES
    assert states.UNREADY_STATES == celery_states.UNREADY_STATES
    assert states.EXCEPTION_STATES == celery_states.EXCEPTION_STATES
    assert states.PROPAGATE_STATES == celery_states.PROPAGATE_STATES
    assert states.ALL_STATES == celery_states.ALL_STATES


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("sent", "PENDING"),
        ("received", "RECEIVED"),
        ("started", "STARTED"),
        ("succeeded", "SUCCESS"),
        ("failed", "FAILURE"),
        ("retried", "RETRY"),
        ("revoked", "REVOKED"),
        ("rejected", "REJECTED"),
        ("progress", "PROGRESS"),
        ("unknown-event-xxx", "UNKNOWN-EVENT-XXX"),
    ],
)
def test_state_for_subject(subject: str, expected: str) -> None:
    """Known subjects map to Celery's states; any other subject becomes a custom state."""
    assert states.state_for_subject(subject) == expected
