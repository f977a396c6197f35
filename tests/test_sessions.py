"""webui/sessions.py: lazy Gradio sessions give the same configs as Gradio's eager ones."""

from __future__ import annotations

import pytest

gr = pytest.importorskip("gradio")

from gradio import state_holder

from webui import sessions


@pytest.fixture(scope="module")
def demo():
    with gr.Blocks() as blocks:
        with gr.Row():
            text = gr.Textbox("hello", label="Text")
            number = gr.Number(3, label="Number")
        state = gr.State({"a": 1})
        out = gr.JSON()
        gr.Button("Go").click(lambda t, n, s: {"t": t}, [text, number, state], out)
    return blocks


def _comparable(components) -> list[dict]:
    return [dict(c) for c in components]


class TestLazySessionState:
    def test_same_configs_as_gradio(self, demo):
        eager, lazy = sessions._EAGER(demo), sessions.LazySessionState(demo)
        assert _comparable(lazy.components) == _comparable(eager.components)
        assert list(lazy.config_values) == list(eager.config_values)

    def test_nothing_rendered_until_read(self, demo):
        lazy = sessions.LazySessionState(demo)
        assert dict.__len__(lazy.config_values) == 0
        first = next(iter(demo.blocks))
        assert first in lazy.config_values
        assert lazy.config_values[first] == sessions._EAGER(demo).config_values[first]
        assert dict.__len__(lazy.config_values) == 1

    def test_value_updates_match(self, demo):
        eager, lazy = sessions._EAGER(demo), sessions.LazySessionState(demo)
        text_id = next(k for k, b in demo.blocks.items() if isinstance(b, gr.Textbox))
        for s in (eager, lazy):
            s._update_value_in_config(text_id, "changed")
        assert lazy.config_values[text_id]["props"]["value"] == "changed"
        assert _comparable(lazy.components) == _comparable(eager.components)

    def test_state_values_match(self, demo):
        eager, lazy = sessions._EAGER(demo), sessions.LazySessionState(demo)
        state_id = next(k for k, b in demo.blocks.items() if isinstance(b, gr.State))
        assert lazy[state_id] == eager[state_id] == {"a": 1}
        for s in (eager, lazy):
            s[state_id] = {"a": 2}
        assert lazy[state_id] == eager[state_id] == {"a": 2}
        assert [b for b, _, _ in lazy.state_components] == [b for b, _, _ in eager.state_components]
        assert _comparable(lazy.components) == _comparable(eager.components)

    def test_replaced_blocks_match(self, demo):
        """A ``gr.update`` with props: Gradio swaps in a new block, re-renders its config, sets its value."""
        eager, lazy = sessions._EAGER(demo), sessions.LazySessionState(demo)
        text_id = next(k for k, b in demo.blocks.items() if isinstance(b, gr.Textbox))
        lazy.config_values[text_id]  # rendered before the change, as after an earlier event
        for s in (eager, lazy):
            s[text_id] = gr.Textbox("x", label="Renamed", visible=False, render=False)
            s._update_config(text_id)
            s._update_value_in_config(text_id, "new value")
        assert dict.__contains__(lazy.config_values, text_id) is False  # stale until read
        assert lazy.config_values[text_id]["props"]["label"] == "Renamed"
        assert lazy.config_values[text_id]["props"]["value"] == "new value"
        assert _comparable(lazy.components) == _comparable(eager.components)

    def test_events_match(self):
        """Gradio's own pre- and post-processing of an event, on both kinds of session."""
        import asyncio

        with gr.Blocks() as demo:
            text, number, state = gr.Textbox("hello"), gr.Number(3), gr.State({"a": 1})
            out = gr.Textbox(label="Out")
            gr.Button("Go").click(lambda t, n, s: t, [text, number, state], out)
        block_fn = next(iter(demo.fns.values()))
        configs = []
        for s in (sessions._EAGER(demo), sessions.LazySessionState(demo)):
            asyncio.run(demo.preprocess_data(block_fn, ["typed", 5, None], s))
            asyncio.run(demo.postprocess_data(block_fn, [gr.update(value="typed", label="Answer")], s))
            asyncio.run(demo.postprocess_data(block_fn, ["again"], s))
            configs.append(_comparable(s.components))
        assert configs[0] == configs[1]
        out = next(c for c in configs[1] if c["props"].get("label") == "Out")
        assert "again" in str(out["props"]["value"])

    def test_unknown_block_is_a_key_error(self, demo):
        lazy = sessions.LazySessionState(demo)
        assert 10**9 not in lazy.config_values
        with pytest.raises(KeyError):
            lazy.config_values[10**9]


class TestInstall:
    def test_install_swaps_the_state_holders_class(self, monkeypatch, demo):
        monkeypatch.setattr(state_holder, "SessionState", sessions._EAGER)
        assert not sessions.installed()
        assert sessions.install() is True
        assert sessions.installed()
        holder = state_holder.StateHolder()
        holder.blocks = demo
        holder.capacity = 4
        assert isinstance(holder["abc"], sessions.LazySessionState)

    def test_a_changed_gradio_is_left_alone(self, monkeypatch, caplog):
        class Changed:  # a future SessionState that sets other attributes
            def __init__(self, blocks):
                self.something_new = blocks

        monkeypatch.setattr(sessions, "_EAGER", Changed)
        monkeypatch.setattr(state_holder, "SessionState", Changed)
        assert sessions.install() is False
        assert state_holder.SessionState is Changed
        assert "keeping its eager session configs" in caplog.text

    def test_the_app_installs_it(self):
        import app  # importing app installs the lazy sessions

        assert sessions.installed()
        eager, lazy = sessions._EAGER(app.demo), sessions.LazySessionState(app.demo)
        assert _comparable(lazy.components) == _comparable(eager.components)
