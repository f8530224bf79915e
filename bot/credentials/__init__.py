"""Just-in-time credentials: each deployment run gets access valid only for its targets and its window."""
