"""One module per CLI command; each exposes ``register(app)`` and imports its stage lazily."""
