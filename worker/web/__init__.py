"""The web surface: the webhook receiver, its health, metrics, the jobs page and
the Django and Flask adapters.

May import: everything below it (job, provider, render, limits, batch, storage, infra).
"""
