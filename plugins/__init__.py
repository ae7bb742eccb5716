"""isolde's built-in plugins (import package ``isolde.plugins``).

Each module registers through the same path as a third-party entry-point plugin
and can be disabled by its name in ``[plugins] disable``.
"""
