"""Configuration: settings from the environment and the Celery configuration derived from them."""

from config.settings import Settings, SettingsError, env_name, get_settings, load_settings

__all__ = ["Settings", "SettingsError", "env_name", "get_settings", "load_settings"]
