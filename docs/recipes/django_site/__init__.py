"""A Django project in front of Ollama, with aliases and a default model."""
