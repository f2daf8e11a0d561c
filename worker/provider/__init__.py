"""Talking to a provider: the HTTP client and its deadlines, the dialects that
spell each provider's API, the download and the URL safety rules.

May import: worker.errors, worker.infra, worker.render. Nothing about jobs, nothing of
config: its settings part (``settings``) is composed into config's, not read from it.
"""
