"""Prefect flows: orchestration only. Prefect runs a deployment's entrypoint as a script with this
directory first on sys.path, so no module here may be named like a top-level package
(tests/unit/test_layout.py)."""
