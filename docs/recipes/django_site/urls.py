"""Every path goes to the relay: Ollama decides what exists."""

from __future__ import annotations

from django.urls import re_path

from . import views

urlpatterns = [re_path(r"^.*$", views.relay)]
