"""A small Flask app that renders clips through the worker fleet (see README.md)."""
