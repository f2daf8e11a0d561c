"""URLs: the app's pages and, under ``hooks/``, the RelayDance webhook receiver."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [
    path("hooks/", include("worker.web.integrations.django")),
    path("", include("renders.urls")),
]
