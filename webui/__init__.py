"""Gradio tabs of the stn demo (``app.py`` puts them together)."""

from webui.watch_tab import build_watch_tab

__all__ = ["build_watch_tab"]
