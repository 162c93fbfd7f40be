"""Sub-commands of ``audit``; each module exposes ``register(subparsers)``."""
