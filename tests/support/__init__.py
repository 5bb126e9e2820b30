"""Helpers the tests share: a Celery app run as a real worker, test cameras, workloads, oracles,
and evcam run as a subprocess."""
