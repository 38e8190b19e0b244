"""The one exception type users see: a single line saying what is wrong and how to fix it."""


class GenforgeError(Exception):
    """A user-facing error. The CLI prints ``str(err)`` on one line and exits 2, no traceback."""


class ConfigError(GenforgeError):
    """A bad config file, section, key, type or value."""


class CheckpointError(GenforgeError):
    """A missing, truncated, corrupted or refused (pickle) checkpoint or model file."""


class DataError(GenforgeError):
    """A missing or empty corpus, or text a codec cannot encode."""
