"""The command line (``relaydance``): every command and its output.

May import: everything; nothing imports it.
"""
