"""The job's life: its record, the steps that move it, the sweeper that keeps it moving.

May import: worker.errors, worker.infra, worker.render, worker.provider, worker.limits,
worker.storage. Never the web surface or the command line.
"""
