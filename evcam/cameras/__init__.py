"""Built-in cameras; pass one to `--camera` by its dotted path (or `sql`, `jsonl`, `dump`).

- `evcam.cameras.dump:DumpCamera`: one summary line per shot (a stub for trying evcam out and
  for tests).
- `evcam.cameras.sql` and `evcam.cameras.jsonl`: the storing cameras (see the README), both
  built on `evcam.cameras.base` (store what changed since the last stored shot) and writing the
  records of `evcam.cameras.records`. Only the SQL camera imports SQLAlchemy.
"""
