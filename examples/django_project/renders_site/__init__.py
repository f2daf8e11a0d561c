"""The example Django project that renders clips through the worker fleet."""
