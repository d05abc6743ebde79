"""Subcommands of ``boosterd``; each module exposes ``register(subparsers)``."""
