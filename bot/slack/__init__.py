"""Everything that talks to the Slack Web API: cards, thread notes, ephemerals, Home tabs, files, the outbox."""
