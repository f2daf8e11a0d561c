"""The settings of each part of the fleet, one model a module, composed in config.settings.

A package that needs one part takes that part's model; the composed ``Settings`` is every
part at once, read from the environment.
"""
