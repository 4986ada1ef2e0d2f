"""Interactive explorers that work with a kernel (sliders) and without one (precomputed frames).

One call, in a chapter's explorer cell::

    from lnn.explorer import explore

    def render(depth, lr):            # returns a matplotlib Figure
        fig, ax = plt.subplots(figsize=(6.0, 3.4))
        ...
        return fig

    explore(render, {"depth": [1, 2, 3, 4], "lr": [0.125, 0.25, 0.5, 1.0]},
            alt="Loss of gradient descent with step {lr:g} at depth {depth}, against gradient flow",
            labels={"depth": "depth N", "lr": "step η"}, initial={"depth": 3, "lr": 0.5})

``explore`` displays the explorer itself and returns ``None`` (write it as the cell's last statement or not:
either way it is shown once).

Two modes
---------
``live``
    A person at a kernel: one ipywidgets ``SelectionSlider`` per parameter, over exactly the given values, and
    the figure redrawn (``render`` called again) whenever a slider is released.
``static``
    The built book and the test suite (no kernel behind the page): ``render`` is called once for every
    combination of the values (keep the product of the list lengths to about 60 or fewer), each figure is
    saved as a compressed image, and the cell's output is an HTML bundle holding only data::

        <div class="lnn-explorer" data-lnn-explorer="1">
          <img class="lnn-explorer-frame" src="(initial frame)" alt="(alt of the initial frame)">
          <script type="application/json" class="lnn-explorer-data">{params, labels, alt, frames...}</script>
        </div>

    ``book/_static/explorer.js`` (loaded on every page of the book) turns it into one labelled,
    keyboard-operable ``<input type="range">`` per parameter, with the current value shown beside it, that
    switch the image's ``src`` and ``alt``. Without JavaScript (or in print) the initial frame is shown.

Which mode: the environment variable ``LNN_EXPLORER`` (``static`` or ``live``). The Makefile exports
``LNN_EXPLORER=static`` for ``make book``, ``make test`` and the other targets, and the book's Sphinx extension
(``scripts/sphinx_reader.py``) sets it too, so a plain ``jupyter-book build`` is static as well. When it is not
set (a notebook opened by a person in Jupyter, VS Code, Colab...), the mode is ``live`` inside an IPython kernel
with ipywidgets installed, and ``static`` otherwise (a plain Python process).

``alt`` is a :meth:`str.format` template over the parameter names, e.g. ``"... at depth {depth}, step
{lr:g}"``: each frame's alt text is the template filled with that frame's values, so a screen reader hears
what the current frame shows.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import math
import os
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["explore", "explorer_bundle", "explorer_mode", "FRAME_DPI", "MAX_FRAMES"]

#: Resolution of the precomputed frames (dots per inch of the figure size): that of the book's figures.
FRAME_DPI = 110
#: WebP quality of the frames stored lossy (those with many colours, where that saves 40 % or more).
LOSSY_QUALITY = 90
#: Upper bound on the number of precomputed frames (the product of the lengths of the value lists).
MAX_FRAMES = 120
_ENV = "LNN_EXPLORER"
_MODES = ("static", "live")


def explorer_mode() -> str:
    """``"static"`` or ``"live"``: from ``LNN_EXPLORER`` when set, otherwise live only inside an IPython kernel."""
    value = os.environ.get(_ENV, "").strip().lower()
    if value:
        if value not in _MODES:
            raise ValueError(f"{_ENV}={value!r}: expected one of {', '.join(_MODES)}")
        return value
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        return "static"
    if shell is None or not hasattr(shell, "kernel"):
        return "static"
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return "static"
    return "live"


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _check(render, params, alt, labels, initial) -> tuple[dict[str, list], dict[str, str], dict[str, Any]]:
    if not callable(render):
        raise TypeError(f"explore: render must be a callable returning a matplotlib Figure, got {type(render)!r}")
    if not isinstance(params, Mapping) or not params:
        raise ValueError("explore: params must be a non-empty mapping {name: [values...]}")
    values: dict[str, list] = {}
    for name, vals in params.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"explore: parameter name {name!r} must be a Python identifier (it is passed as a keyword)")
        if isinstance(vals, (str, bytes)) or not isinstance(vals, Sequence) and not hasattr(vals, "__iter__"):
            raise ValueError(f"explore: params[{name!r}] must be a list of values, got {vals!r}")
        vals = list(vals)
        if not vals:
            raise ValueError(f"explore: params[{name!r}] is empty")
        if len({_format_value(v) for v in vals}) != len(vals):
            raise ValueError(f"explore: params[{name!r}] has values that print alike: {vals!r}")
        values[name] = vals
    n_frames = math.prod(len(v) for v in values.values())
    if n_frames > MAX_FRAMES:
        raise ValueError(f"explore: {n_frames} combinations of values; at most {MAX_FRAMES} frames are precomputed "
                         "(use fewer values per parameter)")
    if not isinstance(alt, str) or not alt.strip():
        raise ValueError("explore: alt must be a non-empty format string describing what a frame shows")
    fields = {f for _, f, _, _ in string.Formatter().parse(alt) if f is not None}
    unknown = {f.split(".")[0].split("[")[0] for f in fields} - set(values)
    if unknown:
        raise ValueError(f"explore: alt refers to {sorted(unknown)}, which are not parameters ({sorted(values)})")
    labels = dict(labels or {})
    extra = set(labels) - set(values)
    if extra:
        raise ValueError(f"explore: labels for unknown parameters {sorted(extra)}")
    labels = {name: str(labels.get(name, name)) for name in values}
    initial = dict(initial or {})
    extra = set(initial) - set(values)
    if extra:
        raise ValueError(f"explore: initial values for unknown parameters {sorted(extra)}")
    start = {}
    for name, vals in values.items():
        if name in initial:
            if initial[name] not in vals:
                raise ValueError(f"explore: initial[{name!r}] = {initial[name]!r} is not one of {vals!r}")
            start[name] = initial[name]
        else:
            start[name] = vals[0]
    return values, labels, start


def _figure_bytes(fig) -> tuple[str, bytes]:
    """The figure as a compact image: WebP (lossless for a line plot: a third of the size of matplotlib's PNG, and
    smaller than a 256-colour PNG; lossy at high quality for many colours), or a 256-colour PNG without WebP."""
    from PIL import Image, features

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    # Drawn straight into an Agg buffer (a PNG encoding by savefig would be thrown away) on opaque white.
    fig.set_dpi(FRAME_DPI)
    fig.patch.set_facecolor("white")
    fig.patch.set_alpha(1.0)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB")
    out = io.BytesIO()
    if features.check("webp"):
        rgb.save(out, format="WEBP", lossless=True, method=4)
        # Heat maps and images (many colours) compress poorly without loss: there a high-quality lossy frame,
        # when it is much smaller (line plots stay lossless, which is smaller for them anyway).
        lossy = io.BytesIO()
        rgb.save(lossy, format="WEBP", quality=LOSSY_QUALITY, method=4)
        if len(lossy.getvalue()) < 0.6 * len(out.getvalue()):
            return "image/webp", lossy.getvalue()
        return "image/webp", out.getvalue()
    rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        out, format="PNG", optimize=True)
    return "image/png", out.getvalue()


def _render(render, values: dict[str, Any]):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    fig = render(**values)
    if not isinstance(fig, Figure):
        plt.close("all")
        raise TypeError(f"explore: render({values}) returned {type(fig).__name__}, not a matplotlib Figure")
    return fig


def explorer_bundle(render: Callable[..., Any], params: Mapping[str, Sequence], *, alt: str,
                    labels: Mapping[str, str] | None = None, initial: Mapping[str, Any] | None = None) -> str:
    """The static explorer as HTML (see the module docstring): every combination rendered once."""
    import matplotlib.pyplot as plt

    values, labels, start = _check(render, params, alt, labels, initial)
    names = list(values)
    frames = []
    for combo in itertools.product(*(values[n] for n in names)):
        kwargs = dict(zip(names, combo))
        fig = _render(render, kwargs)
        try:
            mime, data = _figure_bytes(fig)
        finally:
            plt.close(fig)
        frames.append(f"data:{mime};base64," + base64.b64encode(data).decode("ascii"))
    index = 0
    for name in names:  # row-major index of the initial frame, as explorer.js computes it
        index = index * len(values[name]) + values[name].index(start[name])
    payload = {
        "version": 1,
        "params": [{"name": n, "label": labels[n], "values": [_format_value(v) for v in values[n]],
                    "initial": values[n].index(start[n])} for n in names],
        "alts": [alt.format(**dict(zip(names, combo)))
                 for combo in itertools.product(*(values[n] for n in names))],
        "frames": frames,
    }
    data = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    return (f'<div class="lnn-explorer" data-lnn-explorer="1">'
            f'<img class="lnn-explorer-frame" src="{frames[index]}" alt="{html.escape(payload["alts"][index])}">'
            f'<script type="application/json" class="lnn-explorer-data">{data}</script></div>')


class _StaticExplorer:
    def __init__(self, markup: str):
        self.markup = markup

    def _repr_html_(self) -> str:
        return self.markup

    def __repr__(self) -> str:
        return f"<lnn explorer: {len(self.markup) / 1024:.0f} KiB of precomputed frames>"


def _live(render, values, labels, start):
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    sliders = {
        name: widgets.SelectionSlider(
            options=[(_format_value(v), v) for v in vals], value=start[name], description=labels[name],
            continuous_update=False, style={"description_width": "initial"},
            layout=widgets.Layout(width="28em"))
        for name, vals in values.items()
    }
    out = widgets.Output()

    def redraw(**kwargs):
        fig = _render(render, kwargs)
        display(fig)
        plt.close(fig)

    def update(_change=None):
        with out:
            out.clear_output(wait=True)
            redraw(**{n: s.value for n, s in sliders.items()})

    for s in sliders.values():
        s.observe(update, names="value")
    update()
    return widgets.VBox([*sliders.values(), out])


def explore(render: Callable[..., Any], params: Mapping[str, Sequence], *, alt: str,
            labels: Mapping[str, str] | None = None, initial: Mapping[str, Any] | None = None) -> None:
    """Show an explorer of ``render(**values)`` over the given parameter values (module docstring: the modes).

    ``render`` returns a matplotlib Figure; ``params`` maps each parameter name to its short list of values;
    ``alt`` is a format string over the parameter names saying what a frame shows; ``labels`` maps names to the
    sliders' labels (default: the names); ``initial`` maps names to the starting values (default: the first).
    """
    from IPython.display import display

    values, labels_, start = _check(render, params, alt, labels, initial)
    if explorer_mode() == "live":
        display(_live(render, values, labels_, start))
    else:
        display(_StaticExplorer(explorer_bundle(render, values, alt=alt, labels=labels_, initial=start)))
