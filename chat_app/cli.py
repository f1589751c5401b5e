"""The `flask --app wsgi chat ...` commands.

    flask --app wsgi chat token USER [--rooms R1,R2] [--ttl SECONDS]
        prints a token for USER signed with CHAT_AUTH_KEY (token mode, HS256),
        for trying the pages and for tests
"""

import click
from flask.cli import AppGroup

from .auth import issue
from .chat import current_chat
from .events import parse_room, parse_user
from .exceptions import Invalid

DEFAULT_TTL = 3600  # seconds a token printed by `chat token` lasts, unless --ttl says otherwise

chat = AppGroup("chat", help="The chat server's commands.")


@chat.command("token")
@click.argument("user")
@click.option("--rooms", default=None, metavar="R1,R2",
              help="Comma-separated rooms the token may enter (default: every room).")
@click.option("--ttl", default=DEFAULT_TTL, show_default=True, type=click.IntRange(min=1),
              help="Seconds until the token expires.")
def token(user, rooms, ttl):
    """Prints a token for USER, signed with CHAT_AUTH_KEY."""
    secret = current_chat().settings.auth_key
    if not secret:
        raise click.UsageError("CHAT_AUTH_KEY is not set: tokens are signed with it (HS256)")
    try:
        user = parse_user(user)
        allowed = None if rooms is None else [parse_room(r.strip()) for r in rooms.split(",")]
    except Invalid as exc:
        raise click.BadParameter(exc.message) from None
    click.echo(issue(secret, user, allowed, ttl))
