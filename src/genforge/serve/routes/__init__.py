"""The HTTP API, one module per surface, each with its ``router``: models (and health), completions,
chat, embeddings, images, molecules and the studio. ``app.py`` includes them; a new modality's surface
(audio, ...) is one more module here, beside the text ones.
"""
