"""Slack listeners: thin (ack, parse, one workflow call, render), one module per feature."""
