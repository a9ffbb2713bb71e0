"""The WSGI entry point, ``django_site.wsgi``: Django wrapped in DefaultModel."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from ollama_default import DefaultModel

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")

application = DefaultModel(
    get_wsgi_application(),
    mapping=settings.OLLAMA_ALIASES,
    default=settings.OLLAMA_DEFAULT_ALIAS,
)
