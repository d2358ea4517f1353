"""The Run/Stop row and message line of the Jupyter tabs, rendered with ipywidgets.

What they show is decided by :class:`widgets.controller.RolloutController`; this module
creates the widgets and renders its :class:`~widgets.controller.RunState` and
:class:`~widgets.controller.Message` values, plus the small HTML helpers every Jupyter
tab uses.
"""

from __future__ import annotations

import ipywidgets as w

from widgets.controller import (
    ERROR,
    INFO,
    WARNING,
    Message,
    RolloutController,
    RunState,
    message_html,
)

INFO_COLOUR, WARNING_COLOUR, ERROR_COLOUR = "#1f77b4", "#ff7f0e", "#d62728"


def escape(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def boxed_html(text: str, colour: str) -> str:
    """``text`` (HTML) in a box with a coloured left border."""
    return (
        f'<div style="border-left: 4px solid {colour}; padding: 4px 8px; '
        f'background: #fafafa">{text}</div>'
    )


def error_html(text: str) -> str:
    return boxed_html(f"<b>Error</b>: {escape(text)}", ERROR_COLOUR)


def note_html(text: str) -> str:
    """An information box around ``text`` that is HTML already (links, code)."""
    return boxed_html(text, INFO_COLOUR)


def warning_html(lines: list[str]) -> str:
    if not lines:
        return ""
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    return boxed_html(f"<b>Warning</b><ul style='margin:0'>{items}</ul>", WARNING_COLOUR)


#: How each message severity looks.
RENDERERS = {
    INFO: lambda text: note_html(escape(text)),
    WARNING: lambda text: warning_html([text]),
    ERROR: error_html,
}


class RolloutTab(RolloutController):
    """A Jupyter tab showing one Rollout: the controller's state in ipywidgets.

    :meth:`_build_run` creates ``message``, ``run_button``, ``stop_button``,
    ``progress`` (0 to 1), ``progress_info`` and ``run_box``; call it first.
    """

    def _build_run(self, poll_interval_s: float) -> None:
        self._init_run(poll_interval_s)
        self.message = w.HTML()
        self.run_button = w.Button(description="Run", button_style="success", icon="play")
        self.stop_button = w.Button(
            description="Stop", button_style="danger", icon="stop", disabled=True
        )
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="progress")
        self.progress_info = w.HTML()
        self.run_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.run_box = w.HBox(
            [self.run_button, self.stop_button, self.progress, self.progress_info]
        )

    def _page(self, title: str) -> w.VBox:
        """Title, controls, the Run/Stop row, message, summary and views, top to bottom."""
        heading = w.HTML(f"<h3 style='margin:4px 0'>{title}</h3>")
        parts = [self.control_box, self.run_box, self.message, self.summary, self.views]
        return w.VBox([heading, *parts])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _render(self, state: RunState) -> None:
        self.run_button.disabled, self.stop_button.disabled = state.running, not state.running
        self.progress.value, self.progress.bar_style = state.fraction, state.style
        self.progress_info.value = escape(state.text)

    def _show(self, message: Message) -> None:
        self.message.value = message_html(message, RENDERERS)
