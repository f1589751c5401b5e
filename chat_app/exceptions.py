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


class AuthRefused(Exception):
    """No valid token or API key (401), or a token that does not allow this
    room or user (403); refused before anything is published."""

    def __init__(self, message, status=401):
        super().__init__(message)
        self.message = message
        self.status = status
