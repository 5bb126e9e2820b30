"""`evcam history` output at scale: ``--json`` streams row by row, in bounded memory, and
writes the same bytes as dumping the whole list.

``--json`` of 100,000 large rows must stay under a fixed RSS in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from sqlalchemy import insert

from evcam.cameras.sql import HistoryStore, create_history_engine
from tests.conftest import ROOT
from tests.history.test_query import NOW, _names

# --- streaming: --json of 100,000 rows in bounded memory ------------------------------------

ROWS = 100_000
PAYLOAD = "x" * 1500  # a traceback-sized field: 150 MB of rows in all
RSS_BOUND_MIB = 160  # generous: the interpreter and libraries take ~60 MiB; a list needs ~500

# The child's own peak: VmHWM belongs to its address space (ru_maxrss would also count the
# parent's RSS at the fork, which Linux carries over the exec).
MEASURE = """
import sys
from evcam.history import history
try:
    history.main(sys.argv[1:], prog_name="evcam history", standalone_mode=False)
finally:
    sys.stdout.flush()
    with open("/proc/self/status") as status:
        peak = next(line for line in status if line.startswith("VmHWM:"))
    print(peak.split()[1], file=sys.stderr)
"""


@pytest.mark.slow
def test_json_of_100000_rows_streams_in_bounded_memory(tmp_path: Path) -> None:
    """`--limit 0 --json` over 100,000 rows of 1.5 KB writes them all while the process's
    peak RSS stays under a fixed bound (the rows are never held together)."""
    database = tmp_path / "h.sqlite3"
    store = HistoryStore(create_history_engine(f"sqlite:///{database}"))
    store.ensure_schema()
    with store.engine.begin() as conn:
        for start in range(0, ROWS, 10_000):
            conn.execute(
                insert(store.schema.tasks),
                [
                    {
                        "uuid": f"u{i:06d}",
                        "name": "proj.fail",
                        "state": "FAILURE",
                        "precedence": 1,
                        "timestamp": NOW + i,
                        "last_update": NOW,
                        "traceback": PAYLOAD,
                    }
                    for i in range(start, start + 10_000)
                ],
            )
    store.engine.dispose()
    out = tmp_path / "out.json"
    with out.open("wb") as stdout:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                MEASURE,
                "--url",
                f"sqlite:///{database}",
                "--limit",
                "0",
                "--json",
            ],
            stdout=stdout,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=300,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    peak_mib = int(done.stderr.decode().split()[-1]) / 1024  # VmHWM is in kB
    count, last = 0, None
    with out.open("rb") as lines:
        for line in lines:
            if line.startswith(b'    "uuid": '):
                count += 1
                last = orjson.loads(line.split(b": ", 1)[1].rstrip(b",\n"))
    assert (count, last) == (ROWS, "u000000")  # every row, oldest last
    assert out.stat().st_size > ROWS * len(PAYLOAD)
    assert peak_mib < RSS_BOUND_MIB, f"peak RSS {peak_mib:.0f} MiB"


def test_streamed_json_is_the_array_it_always_was(tmp_path: Path) -> None:
    """The streamed array is byte for byte what dumping the whole list gives (and [] when
    nothing matches)."""
    from click.testing import CliRunner

    from evcam.history import history

    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    store = HistoryStore(create_history_engine(url))
    store.ensure_schema()
    _names(store, ["a", "b", "c"])
    store.engine.dispose()
    result = CliRunner().invoke(history, ["--url", url, "--json"], catch_exceptions=False)
    rows = json.loads(result.output)
    assert [row["name"] for row in rows] == ["c", "b", "a"]
    assert result.output.encode() == orjson.dumps(rows, option=orjson.OPT_INDENT_2) + b"\n"
    empty = CliRunner().invoke(history, ["--url", url, "--json", "--name", "zz"])
    assert empty.output == "[]\n"
