"""Durable stores for conversations, turns, attachments and settings."""
