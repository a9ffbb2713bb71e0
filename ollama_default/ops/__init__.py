"""Operator pieces, each a WSGI middleware or app usable around any app.

They sit above the rewriting (``core``, ``middleware``) and below the standalone server
(``proxy``), which composes them.
"""
