"""Metric families: each turns flip costs into worst-case values of one kind of metric."""
