"""The stack supervisor: starts, stops and reports the embedded PostgreSQL, lake, Prefect server
and market sandbox. Only the top (cli, api, bench) imports it; the pipeline never does.
"""
