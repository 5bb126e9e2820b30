"""Tests of evcam.metrics, one file per module."""
