"""What a render request is: the request model, its validation, the model catalogue,
the rules of each provider, prices, key alias names and local media checks. Imports
neither Celery nor Redis.

May import: worker.errors, config.
"""
