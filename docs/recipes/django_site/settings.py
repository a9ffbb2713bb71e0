"""Settings: just what a service that relays the Ollama API needs."""

from __future__ import annotations

import os

OLLAMA_URL = os.environ.get("OLLAMA_URL", "http://127.0.0.1:11434").rstrip("/")
OLLAMA_ALIASES = {
    "llmodel": "aya-expanse:8b-q8_0",
    "embed": "nomic-embed-text:latest",
}
OLLAMA_DEFAULT_ALIAS = "llmodel"  # for requests that name no model

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")  # the relay signs nothing
DEBUG = False
ALLOWED_HOSTS = os.environ.get(
    "DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]"
).split(",")
ROOT_URLCONF = "django_site.urls"
WSGI_APPLICATION = "django_site.wsgi.application"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.middleware.csrf.CsrfViewMiddleware"]
USE_TZ = True
# Multimodal requests carry their images in base64; DefaultModel's limit is 100 MiB.
DATA_UPLOAD_MAX_MEMORY_SIZE = 100 * 1024 * 1024
