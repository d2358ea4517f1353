"""The Run/Stop row and message line of the Panel tabs, and the HTML helpers they share.

What they show is decided by :class:`widgets.controller.RolloutController`; this module
creates the Panel widgets, renders its :class:`~widgets.controller.RunState` and
:class:`~widgets.controller.Message` values, and hands UI changes from the driver
thread to the session's document with ``doc.add_next_tick_callback`` (``doc`` captured
when the session built the tab), which runs them on the server thread under the
document lock. Built outside a server (tests, scripts) there is no document and updates
are applied at once under a lock (``UI-NOTES.md``).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable

import panel as pn
import plotly.graph_objects as go

from widgets.app_sessions import RolloutSlots
from widgets.controller import (
    ERROR,
    INFO,
    WARNING,
    Message,
    RolloutController,
    RunState,
    message_html,
)

log = logging.getLogger("accelmd.app")

INFO_COLOUR = "#1f77b4"


def box(text: str, colour: str, css: str) -> str:
    """``text`` (HTML) in a box with a coloured left border and CSS class ``css``."""
    return (
        f'<div class="{css}" style="border-left: 4px solid {colour}; padding: 4px 8px; '
        f'background: #fafafa">{text}</div>'
    )


def error_html(text: str) -> str:
    return box(f"<b>Error</b>: {html.escape(text)}", "#d62728", "accelmd-error")


def info_html(text: str) -> str:
    return box(html.escape(text), INFO_COLOUR, "accelmd-info")


def note_html(text: str) -> str:
    """An information box around ``text`` that is HTML already (links, code)."""
    return box(text, INFO_COLOUR, "accelmd-info")


def warning_html(lines: list[str]) -> str:
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return box(f"<b>Warning</b><ul style='margin:0'>{items}</ul>", "#ff7f0e", "accelmd-warning")


#: How each message severity looks.
RENDERERS = {INFO: info_html, WARNING: lambda text: warning_html([text]), ERROR: error_html}


def plotly_pane(fig: go.Figure, name: str, height: int = 400) -> pn.pane.Plotly:
    """A pane that shows whole figures (``link_figure=False``: swap, do not patch)."""
    return pn.pane.Plotly(
        fig, height=height, sizing_mode="stretch_width", link_figure=False,
        config={"displaylogo": False}, css_classes=[f"accelmd-{name}"],
    )  # fmt: skip


def deferred(layout: pn.viewable.Viewable) -> pn.viewable.Viewable:
    """``layout`` sent to the browser only once the page has loaded (Panel's
    ``defer_load``): the plots (plotly, WebGL for 3-D) no longer hold back the controls."""
    return pn.panel(lambda: layout, defer_load=True, sizing_mode="stretch_width")


class PanelRolloutTab(RolloutController):
    """A Panel tab showing one Rollout: the controller's state in Panel widgets.

    :meth:`_build_run` creates ``message``, ``summary``, ``run_button``, ``stop_button``,
    ``progress`` (0 to 1000), ``progress_info`` and ``run_box``; call it first. CSS
    classes start with ``css_prefix``. Closing the browser tab stops the rollout
    (:meth:`close`).
    """

    css_prefix = "accelmd-"
    _log = log

    def _build_run(self, slots: RolloutSlots, poll_interval_s: float) -> None:
        self._init_run(poll_interval_s, slots)
        self._doc = pn.state.curdoc  # the session's document (None outside a server)
        css = self.css_prefix
        self.message = pn.pane.HTML("", css_classes=[f"{css}message"], sizing_mode="stretch_width")
        self.summary = pn.pane.HTML("", css_classes=[f"{css}summary"])
        self.run_button = pn.widgets.Button(
            label="▶ Run", color="success", width=100, css_classes=[f"{css}run"]
        )
        self.stop_button = pn.widgets.Button(
            label="■ Stop", color="danger", width=100, disabled=True, css_classes=[f"{css}stop"]
        )
        self.progress = pn.indicators.Progress(value=0, max=1000, width=240, bar_color="info")
        self.progress_info = pn.pane.Str("", css_classes=[f"{css}progress"])
        self.run_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.run_box = pn.Row(self.run_button, self.stop_button, self.progress, self.progress_info)

    def _render(self, state: RunState) -> None:
        self.run_button.disabled, self.stop_button.disabled = state.running, not state.running
        self.progress.param.update(value=int(1000 * state.fraction), bar_color=state.style)
        self.progress_info.object = state.text

    def _show(self, message: Message) -> None:
        self.message.object = message_html(message, RENDERERS)

    def _page(self, title: str, css: str) -> pn.Column:
        """Title, controls, the Run/Stop row, message, summary and views, top to bottom."""
        parts = [self.control_box, self.run_box, self.message, self.summary, self.views]
        if hasattr(self, "download_box"):  # tabs with widgets.app_downloads.PanelDownloads
            parts.append(self.download_box)
        heading = pn.pane.Markdown(f"### {title}")
        return pn.Column(heading, *parts, sizing_mode="stretch_width", css_classes=[css])

    def _post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` where Panel objects may change: the session's thread, or here."""
        doc = self._doc
        if self._closed or doc is None or doc.session_context is None:
            super()._post(fn)
            return
        try:
            doc.add_next_tick_callback(fn)
        except Exception:  # the session ended between the check and the call
            log.info("update dropped: the session is gone")

    def _replace_figure(self, name: str, fig: go.Figure) -> None:
        """Show a new figure object: how layout changes (axis type, axis titles) reach the
        browser. The pane compares layouts against dicts that share nested objects with
        the figure, so an in-place edit of e.g. ``layout.xaxis.type`` can go unnoticed."""
        self.figures[name] = fig
        self.panes[name].object = fig

    figures: dict[str, go.Figure]
    panes: dict[str, pn.pane.Plotly]
