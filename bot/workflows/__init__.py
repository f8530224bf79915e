"""Use cases: plain async functions, session first, keyword-only arguments, no Slack imports."""
