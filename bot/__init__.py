"""gemini-bot core: conversation engine, model boundary, streaming, personas."""

__version__ = "0.1.0"
