"""bench/scenarios.py's ClientPool: each client process's reply is read as it comes."""

import os
import time
from pathlib import Path

from bench.loop import Loop
from bench.scenarios import ClientPool

BIG = 1 << 20  # bytes: more than a pipe holds, so its writer blocks until it is read


class ReplyLoop(Loop):
    """Process 1 answers at once, with BIG bytes; process 0 answers once
    process 1's reply has been read (a file says so), or after 10 s. The
    pool passes `port` through to the loop: here, that file's path."""

    def __init__(self, pipe, port):
        super().__init__(pipe, port)
        os.set_blocking(pipe.fileno(), True)  # see the test below

    def on_command(self, name, args):
        if name != "reply":
            return super().on_command(name, args)
        read = Path(self.port)
        if args["index"] == 1:
            self.reply("reply", b"x" * BIG)
            read.touch()  # the send returned: the reply is in the other process
            return None
        deadline = time.monotonic() + 10
        while not read.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.reply("reply", read.exists())
        return None


def test_a_big_reply_is_read_while_an_earlier_process_has_not_answered(tmp_path):
    with ClientPool(ReplyLoop, 2, str(tmp_path / "read")) as pool:
        for pipe in pool.pipes:  # blocking, as in the benchmark (the tests' gevent made them not)
            os.set_blocking(pipe.fileno(), True)
        replies = pool.call("reply", [{"index": 0}, {"index": 1}], "reply", timeout=30)
    assert replies[0] == (True,)  # process 1 was not left blocked on its pipe
    assert len(replies[1][0]) == BIG
