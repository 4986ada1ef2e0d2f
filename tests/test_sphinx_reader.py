"""scripts/sphinx_reader.py: the repository address (never invented) and the accessibility fixes of the pages."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import sphinx_reader  # noqa: E402

LAUNCH = {"notebook_interface": "jupyterlab", "binderhub_url": "https://mybinder.org",
          "colab_url": "https://colab.research.google.com", "thebe": False}


def _configure(tmp_path, url=""):
    config = SimpleNamespace(html_theme_options={"repository_url": url, "launch_buttons": dict(LAUNCH)})
    sphinx_reader.set_repository(SimpleNamespace(confdir=str(tmp_path)), config)
    return config.html_theme_options


def test_no_address_no_buttons(tmp_path, monkeypatch):
    monkeypatch.delenv("LNN_REPOSITORY_URL", raising=False)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    options = _configure(tmp_path)
    assert options["repository_url"] == "" and options["use_repository_button"] is False
    assert not any(options["launch_buttons"][k] for k in ("binderhub_url", "colab_url", "jupyterhub_url"))


def test_address_from_the_origin_remote(tmp_path, monkeypatch):
    monkeypatch.delenv("LNN_REPOSITORY_URL", raising=False)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin", "https://user:token@github.com/me/book.git"],
                   check=True)
    options = _configure(tmp_path)
    assert options["repository_url"] == "https://github.com/me/book"  # credentials and .git dropped
    assert options["use_repository_button"] is True
    assert options["launch_buttons"]["binderhub_url"] == "https://mybinder.org"


def test_address_from_the_environment_and_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("LNN_REPOSITORY_URL", "https://github.com/env/book")
    assert _configure(tmp_path)["repository_url"] == "https://github.com/env/book"
    assert _configure(tmp_path, "https://gitlab.com/cfg/book")["repository_url"] == "https://gitlab.com/cfg/book"


def test_unknown_hosts_and_local_paths_give_no_address(tmp_path, monkeypatch):
    monkeypatch.delenv("LNN_REPOSITORY_URL", raising=False)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for remote in ("/srv/git/book.git", "https://example.org/me/book"):
        subprocess.run(["git", "-C", str(tmp_path), "remote", "remove", "origin"], capture_output=True)
        subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin", remote], check=True)
        assert sphinx_reader.repository_address(tmp_path) is None, remote


def test_accessibility_fixes():
    page = (
        '<button class="btn search-button-field search-button__button pst-js-only" title="Search" aria-label="Search">'
        '<i class="theme-switch fa-solid fa-sun fa-lg" data-mode="light" title="Light"></i>'
        '<summary aria-label="Toggle hidden content"><div role="list"><div class="citation" role="doc-biblioentry">'
    )
    for pattern, replacement, _ in sphinx_reader.A11Y_FIXES:
        page = pattern.sub(replacement, page)
    assert 'aria-label="Search"' not in page and 'title="Search"' in page
    assert '<i aria-hidden="true" class="theme-switch fa-solid fa-sun fa-lg" data-mode="light">' in page
    assert "<summary>" in page and 'role="listitem"' in page and "doc-biblioentry" not in page
