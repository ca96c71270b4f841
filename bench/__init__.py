"""Benchmark scripts whose results the README quotes; each measures its reference in the same run."""
