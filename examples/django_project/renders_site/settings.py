"""Settings of the example project: one app, no database (the job record lives in Redis,
the app's own results in a SQLite file written by its ``on_done`` task)."""

from __future__ import annotations

import os

DEBUG = os.environ.get("DJANGO_DEBUG", "true").lower() == "true"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-set-DJANGO_SECRET_KEY")
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

INSTALLED_APPS = ["renders"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "renders_site.urls"
WSGI_APPLICATION = "renders_site.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.csrf"]},
    }
]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# runserver logs each request line and Django logs the path of every 4xx answer, and
# webhook paths carry callback tokens: mask them.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"callback_tokens": {"()": "worker.infra.logs.RedactingFilter"}},
    "handlers": {
        "server": {"class": "logging.StreamHandler", "filters": ["callback_tokens"]},
    },
    "loggers": {
        "django.server": {"handlers": ["server"], "level": "INFO", "propagate": False},
        "django.request": {"filters": ["callback_tokens"]},
    },
}
