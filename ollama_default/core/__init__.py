"""The pure core: the rewriting rules, with no I/O and no WSGI.

Model names, aliases, the table of endpoints, the three dialects and their errors, how Go
reads a JSON body, request and response bodies, stream framing, the plan of how a
response is rewritten, and the checks a configured value passes. Bytes, strings and
header lists in, the same out: everything here is tested without a socket, a file, a
clock or a server, and ``tests/test_layers.py`` keeps it so (import-linter's contracts in
``pyproject.toml``).
"""
