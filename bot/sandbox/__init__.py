"""The local sandbox: a fake Slack Web API and a workspace page that plays the whole loop."""
