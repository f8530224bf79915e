"""patchwarden: team-driven patch and change approval in Slack."""

__version__ = "0.1.0"
