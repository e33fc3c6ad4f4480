"""MelodyGen's engraver process: verovio reading ABC, away from the caller's process.

Verovio's ABC reader is native code that some tunes crash outright (verovio 6.4.1 dies
on an ending followed at once by a chord, ``[1[fA]``, or by a chord symbol, ``[1"G"``).
:mod:`melodygen.notation` sends every ABC tune it engraves here (``python -m
melodygen.engraver``, one process started on first use), so a crash costs one score,
never the studio server. The protocol is one JSON object a line each way: a request
``{"op": "draw", "text": ABC, "options": {...}}`` (an SVG) or ``{"op": "read", "text":
ABC}`` (verovio's MEI, or null); a reply ``{"result": ...}`` or ``{"error": "one line"}``.
"""

from __future__ import annotations

import json
import sys


def serve(requests=None, replies=None) -> None:
    """Answer requests from ``requests`` (stdin) on ``replies`` (stdout) until it closes.

    Replies go to a copy of the process's standard output; the standard output itself
    then points at /dev/null, so nothing that native code prints can break a reply."""
    import os

    from melodygen.errors import one_line
    from melodygen.notation import _draw_abc, _read_abc

    if replies is None:
        replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 1)
        os.close(quiet)
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - for the process
    requests = requests or sys.stdin
    for line in requests:
        try:
            request = json.loads(line)
            if request["op"] == "draw":
                reply = {"result": _draw_abc(request["text"], request["options"])}
            else:
                reply = {"result": _read_abc(request["text"])}
        except Exception as error:  # noqa: BLE001 - every problem goes back as one line
            reply = {"error": one_line(error)}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    serve()
