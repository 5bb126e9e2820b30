"""Tests of evcam.receiver, one file per module of the package (test_<module>.py)."""
