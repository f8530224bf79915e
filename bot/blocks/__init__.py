"""Block Kit builders, one module per surface. All user text passes through ``common.escape``."""
