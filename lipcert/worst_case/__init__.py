"""Stateless certificate math: flip costs in, worst-case metric values under a budget out."""
