"""Built-in cameras; pass one to `--camera` by its dotted path.

- `evcam.cameras.dump:DumpCamera`: one summary line per shot (a stub for trying evcam out and
  for tests).
- `evcam.cameras.sql` and `evcam.cameras.jsonl`: the storing cameras (see the README).
"""
