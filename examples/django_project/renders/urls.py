"""The app's pages and its small JSON API."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("renders/", views.create_from_form, name="create"),
    path("api/renders/", views.create_from_json, name="api-create"),
    path("api/renders/<str:job_id>", views.status_json, name="api-status"),
    path("renders/<str:job_id>", views.status_page, name="status"),
    path("videos/<str:job_id>.mp4", views.video, name="video"),
]
