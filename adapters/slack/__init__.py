"""Slack adapter: Bolt AsyncApp in Socket Mode or HTTP mode, feeding the engine."""

from adapters.slack.adapter import SlackAdapter

__all__ = ["SlackAdapter"]
