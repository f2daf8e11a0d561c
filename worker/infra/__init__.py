"""Plumbing: Redis connections, the embedded redis-server, the broker transport,
the Celery app and logging.

May import: worker.errors, config. The Celery app builds the engine on first use.
"""
