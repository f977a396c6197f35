"""Cheaper Gradio sessions: build a block's session config when it is first needed, not up front.

Gradio opens a session for every REST call that brings no ``session_hash`` (a plain ``curl``),
and ``gradio.state_holder.SessionState.__init__`` renders the config of *every* block of the app
into ``config_values`` right away. Only deep links ever read those configs back, and this app
has none; with its ~140 blocks that eager work was most of a REST call's cost (12–25 ms of CPU,
``bench/README.md``). :class:`LazySessionState` keeps the same state and the same answers, but
fills ``config_values`` per block on first use (or all at once when they are listed). The same
goes for every event afterwards: Gradio re-renders an input's or output's config each time its
value or props change (~0.3 ms a block, several per call); here a change only marks the entry
stale, with the new value kept aside, and the entry is rendered when someone reads it.

``install()`` swaps it in for the sessions Gradio's state holder opens; it checks that this
Gradio's ``SessionState`` still looks the way this was written against (6.x) and leaves Gradio
alone otherwise. ``tests/test_sessions.py`` checks that both give the same configs.
"""

from __future__ import annotations

import datetime
import inspect
import logging
import os
from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from copy import copy
from typing import Any

from gradio import state_holder
from gradio.components import State as _State

__all__ = ["LazyConfigValues", "LazySessionState", "install", "installed"]

log = logging.getLogger("stn.app")

_EAGER = state_holder.SessionState
# What this module replaces: the attributes the stock __init__ sets, and the members that read them.
_EXPECTED = ("__getitem__", "__setitem__", "_update_config", "_update_value_in_config", "components", "state_components")


class LazyConfigValues(dict):
    """``{block id: block config}`` that renders a block's config when it is first read.

    Keys are the app's block ids; an entry written explicitly (Gradio does, when a value
    changes) wins over the rendered default. Listing the entries renders the missing ones,
    in the app's block order, as the eager dict held them.
    """

    def __init__(self, blocks_config: Any, ids: list[int]) -> None:
        super().__init__()
        self._blocks_config = blocks_config
        self._ids = ids
        self._known = set(ids)
        self._values: dict[int, Any] = {}  # a block's new value, for when its config is rendered

    def _render(self, key: int) -> dict:
        return self._blocks_config.config_for_block(key, [], self._blocks_config.blocks[key])

    def __missing__(self, key: int) -> dict:
        if key not in self._known:
            raise KeyError(key)
        config = self._render(key)
        if key in self._values:
            value = self._values.pop(key)
            if "props" in config:
                config["props"]["value"] = value
        dict.__setitem__(self, key, config)
        return config

    def stale(self, key: int) -> None:
        """The block behind ``key`` changed: render its config again when it is next read."""
        if key in self._known:
            dict.pop(self, key, None)
            self._values.pop(key, None)

    def set_value(self, key: int, value: Any) -> None:
        """The block's value changed: Gradio's ``config["props"]["value"] = value``, deferred."""
        if dict.__contains__(self, key):
            config = dict.__getitem__(self, key)
            if "props" in config:
                config["props"]["value"] = value
        elif key in self._known:
            self._values[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._known or dict.__contains__(self, key)

    def _fill(self) -> None:
        for key in self._ids:
            if not dict.__contains__(self, key):
                self[key]  # __missing__ renders it
        # the eager dict held the app's blocks first, then any written later
        order = self._ids + [k for k in dict.keys(self) if k not in self._known]
        items = [(k, dict.__getitem__(self, k)) for k in order]
        dict.clear(self)
        dict.update(self, items)

    def items(self) -> ItemsView:
        self._fill()
        return dict.items(self)

    def values(self) -> ValuesView:
        self._fill()
        return dict.values(self)

    def keys(self) -> KeysView:
        self._fill()
        return dict.keys(self)

    def __iter__(self) -> Iterator[int]:
        self._fill()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._fill()
        return dict.__len__(self)


class LazySessionState(_EAGER):
    """``gradio.state_holder.SessionState`` with :class:`LazyConfigValues` (same state otherwise)."""

    def __init__(self, blocks: Any) -> None:  # deliberately not calling the eager __init__
        self.blocks_config = copy(blocks.default_config)
        ids = [k for k in self.blocks_config.blocks if k in blocks.blocks]
        self.config_values = LazyConfigValues(self.blocks_config, ids)
        self.state_data: dict[int, Any] = {}
        self._state_ttl: dict[int, tuple] = {}
        self.is_closed = False
        self.STATE_TTL_WHEN_CLOSED = 1 if os.getenv("GRADIO_IS_E2E_TEST", None) else 3600

    def __setitem__(self, key: int, value: Any) -> None:
        block = self.blocks_config.blocks.get(key)
        if block is None or key not in self.config_values._known:
            super().__setitem__(key, value)
            return
        # the stock method, less its eager re-render of the block's config
        if isinstance(block, _State):
            self._state_ttl[key] = (block.time_to_live, datetime.datetime.now())
            self.state_data[key] = value
        else:
            self.blocks_config.blocks[key] = value
        self.config_values.stale(key)

    def _update_config(self, key: int) -> None:
        block = self.blocks_config.blocks.get(key)
        if block is None or block.stateful or key not in self.config_values._known:
            super()._update_config(key)  # the stock one renders from the state's value: keep it exact
        elif self[key] is not None:
            self.config_values.stale(key)

    def _update_value_in_config(self, key: int, value: Any) -> None:
        if key in self.config_values._known:
            self.config_values.set_value(key, value)
        else:
            super()._update_value_in_config(key, value)


def _compatible() -> bool:
    if not all(hasattr(_EAGER, name) for name in _EXPECTED):
        return False
    try:  # the stock __init__ must set exactly the attributes LazySessionState sets
        src = inspect.getsource(_EAGER.__init__)
    except (OSError, TypeError):
        return False
    wanted = ("self.blocks_config", "self.config_values", "self.state_data", "self._state_ttl", "self.is_closed",
              "self.STATE_TTL_WHEN_CLOSED")
    assigned = {line.split("=")[0].strip().split(":")[0] for line in src.splitlines() if line.strip().startswith("self.")}
    if assigned != set(wanted):
        return False
    try:  # LazySessionState.__setitem__ re-does the stock one, less its rendering
        setitem = inspect.getsource(_EAGER.__setitem__)
    except (OSError, TypeError):
        return False
    return all(part in setitem for part in ("self._state_ttl[key]", "self.state_data[key] = value",
                                            "self.blocks_config.blocks[key] = value", "config_for_block"))


def installed() -> bool:
    """Whether Gradio's state holder now opens :class:`LazySessionState` sessions."""
    return state_holder.SessionState is LazySessionState


def install() -> bool:
    """Make Gradio's state holder open lazy sessions; returns whether it did.

    A Gradio whose ``SessionState`` differs from the one this was written against is left as
    it is (with a log line): the app then works as before, only slower per REST call.
    """
    if installed():
        return True
    if not _compatible():
        log.warning("Gradio's SessionState changed; keeping its eager session configs")
        return False
    state_holder.SessionState = LazySessionState
    return True
