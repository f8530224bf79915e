"""Executor plugins: the contract (``base``), entry-point loading (``registry``) and the built-ins."""
