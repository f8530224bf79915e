"""Renderers outside Slack: the compliance report, the calendar picture, the iCalendar feed."""
