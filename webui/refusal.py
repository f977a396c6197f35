"""A refusal: the sentence a visitor reads in the page's toast (or an API caller in the event's error).

A ``gr.Error`` prints its traceback to the server's log by default, as if the server had failed. A
refused upload, an empty sketchpad or an unknown model is the visitor's input, not a fault: it is
logged as one line, and a real fault keeps its traceback (``app.user_errors`` logs it).
"""

from __future__ import annotations

import logging

import gradio as gr

__all__ = ["refusal"]

log = logging.getLogger("stn.app")


def refusal(message: str, title: str = "Error") -> gr.Error:
    """The ``gr.Error`` to raise for ``message``: shown under ``title``, logged as one line without a traceback.

    The toast stays until it is closed (``duration=None``): the views it empties say "the message at the top of
    the page says why", and a 10 s toast was gone before a slow reader, or one who looked away, had read it.
    """
    log.info("refused (%s): %s", title, message)
    return gr.Error(message, title=title, print_exception=False, duration=None)
