"""Conversational use and serving: chat templates, the terminal chat REPL, and the HTTP server.

Nothing is imported here, so ``import genforge.serve.chat_template`` stays cheap (no torch).
"""
