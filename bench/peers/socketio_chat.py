"""The `rooms` scenario's Flask-SocketIO peer: the same rooms chat, the way
Flask-SocketIO's documentation deploys it.

Run by gunicorn with gevent workers (bench/rooms.py starts it from the
virtualenv bench/.peer-venv):

    REDIS_URL=redis://127.0.0.1:6390/0 bench/.peer-venv/bin/gunicorn -k gevent -w 2 \
        --worker-connections 10000 --chdir bench/peers socketio_chat:app

A client connects to /socket.io/?EIO=4&transport=websocket&room=R (wsbench's
`-proto socketio`) and is put in room R on connect; each `chat` event it
emits is emitted to everyone in R, the sender included, through the Redis
message queue, so a client of either worker gets it. WebSockets are served
by simple-websocket (python-engineio's gevent driver uses it when
gevent-websocket is not installed). GET /healthz answers 200, for the
benchmark to see that every worker is up.
"""

import os
import resource

from flask import Flask, request
from flask_socketio import SocketIO, emit, join_room

# Every connection is a file descriptor: allow as many as the hard limit, as
# the chat's gunicorn.conf.py does.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))

app = Flask(__name__)
socketio = SocketIO(app, async_mode="gevent", message_queue=os.environ["REDIS_URL"])


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


@socketio.on("connect")
def connect(auth=None):
    join_room(request.args.get("room", "lobby"))


@socketio.on("chat")
def chat(text):
    emit("chat", text, to=request.args.get("room", "lobby"))
