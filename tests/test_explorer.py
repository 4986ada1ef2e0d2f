"""lnn.explorer: the static bundle (data only) and the mode switch; the browser side is in test_browser.py."""

import base64
import html.parser
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from lnn import explorer  # noqa: E402




def render(a, b):
    fig, ax = plt.subplots(figsize=(3.0, 2.0))
    ax.plot([0, 1], [0, a * b], color="C0")
    ax.set(title=f"a={a}, b={b}", xlabel="x", ylabel="y")
    return fig


class Bundle(html.parser.HTMLParser):
    def __init__(self, markup):
        super().__init__()
        self.tags, self.data, self._in_data = [], None, False
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_data = tag == "script"

    def handle_data(self, data):
        if self._in_data:
            self.data = json.loads(data)

    def handle_endtag(self, tag):
        self._in_data = False


def test_bundle_holds_every_frame_with_its_alt():
    plt.close("all")  # figures left open by other tests of the session
    markup = explorer.explorer_bundle(render, {"a": [1, 2, 3], "b": [0.5, 1.0]},
                                      alt="line of slope {a} times {b:g}", labels={"a": "slope a"},
                                      initial={"a": 2, "b": 1.0})
    parsed = Bundle(markup)
    tags = [t for t, _ in parsed.tags]
    assert tags == ["div", "img", "script"], tags  # data only: no controls, no inline code
    div, img, script = (a for _, a in parsed.tags)
    assert div["class"] == "lnn-explorer"
    assert script["type"] == "application/json"
    data = parsed.data
    assert [p["name"] for p in data["params"]] == ["a", "b"]
    assert data["params"][0]["label"] == "slope a" and data["params"][1]["label"] == "b"
    assert data["params"][0]["values"] == ["1", "2", "3"] and data["params"][1]["values"] == ["0.5", "1"]
    assert [p["initial"] for p in data["params"]] == [1, 1]
    assert len(data["frames"]) == len(data["alts"]) == 6
    # Row-major over the parameters: frame 1 is (a=1, b=1.0), frame 2 is (a=2, b=0.5).
    assert data["alts"][1] == "line of slope 1 times 1" and data["alts"][2] == "line of slope 2 times 0.5"
    # The image shown without JavaScript is the initial frame (a=2, b=1.0: index 3), with its alt.
    assert img["src"] == data["frames"][3] and img["alt"] == "line of slope 2 times 1"
    blobs = set()
    for frame in data["frames"]:
        head, b64 = frame.split(",", 1)
        assert head == "data:image/webp;base64"
        raw = base64.b64decode(b64)
        assert raw[:4] == b"RIFF" and raw[8:12] == b"WEBP"
        blobs.add(raw)
    assert len(blobs) == 6  # each combination rendered (the titles differ)
    assert not plt.get_fignums()  # every frame's figure was closed


def test_frames_are_compact():
    markup = explorer.explorer_bundle(render, {"a": [1, 2], "b": [1]}, alt="slope {a}")
    size = len(Bundle(markup).data["frames"][0])
    # A 3 x 2 inch line plot at FRAME_DPI (110) as lossless WebP: 5.5 KiB in base64 measured; matplotlib's
    # own PNG is 3 times that.
    assert size < 8000, size


@pytest.mark.parametrize("kwargs, message", [
    (dict(params={}, alt="x"), "non-empty mapping"),
    (dict(params={"a": []}, alt="x"), "is empty"),
    (dict(params={"a": [1, 2]}, alt=""), "alt must be"),
    (dict(params={"a": [1, 2]}, alt="slope {c}"), "not parameters"),
    (dict(params={"a": [1, 2]}, alt="x", initial={"a": 5}), "is not one of"),
    (dict(params={"a": [1, 2]}, alt="x", labels={"z": "zz"}), "unknown parameters"),
    (dict(params={"a": list(range(200))}, alt="x"), "at most"),
    (dict(params={"a": [0.1, 0.1000001]}, alt="x"), "print alike"),
])
def test_bad_input_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        explorer.explorer_bundle(render, **kwargs)


def test_render_must_return_a_figure():
    with pytest.raises(TypeError, match="not a matplotlib Figure"):
        explorer.explorer_bundle(lambda a: None, {"a": [1]}, alt="x")
    with pytest.raises(TypeError, match="callable"):
        explorer.explorer_bundle(None, {"a": [1]}, alt="x")


def test_mode_from_the_environment(monkeypatch):
    monkeypatch.setenv("LNN_EXPLORER", "static")
    assert explorer.explorer_mode() == "static"
    monkeypatch.setenv("LNN_EXPLORER", "live")
    assert explorer.explorer_mode() == "live"
    monkeypatch.setenv("LNN_EXPLORER", "kernel")
    with pytest.raises(ValueError, match="LNN_EXPLORER"):
        explorer.explorer_mode()
    monkeypatch.delenv("LNN_EXPLORER")
    assert explorer.explorer_mode() == "static"  # a plain Python process: no kernel


def test_explore_displays_the_bundle_in_static_mode(monkeypatch):
    shown = []
    monkeypatch.setenv("LNN_EXPLORER", "static")
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    assert explorer.explore(render, {"a": [1, 2], "b": [1]}, alt="slope {a}") is None
    (obj,) = shown
    assert obj._repr_html_().startswith('<div class="lnn-explorer"')


def test_explore_shows_sliders_in_live_mode(monkeypatch):
    plt.close("all")  # figures left open by other tests of the session
    import ipywidgets

    shown = []
    monkeypatch.setenv("LNN_EXPLORER", "live")
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    calls = []

    def counting(a, b):
        calls.append((a, b))
        return render(a, b)

    explorer.explore(counting, {"a": [1, 2, 3], "b": [0.5, 1.0]}, alt="x", initial={"b": 1.0})
    box = shown[-1]  # the first redraw displays the figure into the Output widget, then the box is shown
    assert isinstance(box, ipywidgets.VBox)
    sliders = [w for w in box.children if isinstance(w, ipywidgets.SelectionSlider)]
    assert [[label for label, _ in s.options] for s in sliders] == [["1", "2", "3"], ["0.5", "1"]]
    assert calls == [(1, 1.0)]
    sliders[0].value = 3  # moving a slider redraws with the new value
    assert calls[-1] == (3, 1.0)
    assert not plt.get_fignums()


def test_mode_in_a_real_kernel():
    """A kernel without LNN_EXPLORER (a person's notebook) shows widgets; with LNN_EXPLORER=static, the bundle."""
    import os
    import sys
    from pathlib import Path

    import nbformat
    from nbclient import NotebookClient

    source = (
        "import matplotlib.pyplot as plt\n"
        "from lnn.explorer import explore\n"
        "def render(a):\n"
        "    fig, ax = plt.subplots(figsize=(2, 1.5)); ax.plot([0, a]); return fig\n"
        "explore(render, {'a': [1, 2]}, alt='a line up to {a}')\n"
    )
    kinds = {}
    for mode in ("", "static"):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
        env = {k: v for k, v in os.environ.items() if k != "LNN_EXPLORER"}
        if mode:
            env["LNN_EXPLORER"] = mode
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        NotebookClient(nb, timeout=120, kernel_name="python3").execute(env=env)
        kinds[mode or "unset"] = [sorted(o.get("data", {})) for o in nb.cells[0].outputs]
    assert any("application/vnd.jupyter.widget-view+json" in k for k in kinds["unset"]), kinds
    assert any("text/html" in k for k in kinds["static"]), kinds
    assert not any("application/vnd.jupyter.widget-view+json" in k for k in kinds["static"]), kinds
