"""Conversational use and serving: the terminal chat REPL and the OpenAI-compatible HTTP server.

Nothing is imported here, so importing a serve module pulls in only what it needs.
"""
