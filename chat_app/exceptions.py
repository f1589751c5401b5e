"""The exceptions a request may end with; errors.py answers each with its status."""


class Invalid(ValueError):
    """Input refused before anything is published: 400, or 413 when too large."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.message = message
        self.status = status


class RateLimited(Exception):
    """The sender used up its allowance of messages in this room: 429."""


class StoreUnavailable(Exception):
    """Redis did not answer; nothing was posted: 503."""


class ShuttingDown(Exception):
    """This process is stopping: listeners are sent elsewhere (503, or WebSocket 1012)."""
