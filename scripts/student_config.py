"""Write the student-edition Jupyter Book config: the book's _config.yml with solutions hidden.

Usage: python scripts/student_config.py _config.yml _build/_config_student.yml

The differences from the instructor edition: sphinx-exercise's ``hide_solutions: true`` (every
``{solution}`` is dropped from the HTML), the title, and no copy of the page sources
(``html_copy_source: false``; the notebooks hold the solutions), hence no download button and no
launch buttons (they open the full notebooks). Paths in the config stay relative
to the book's source folder (the repository root), so the written file may live anywhere, except
``sphinx.local_extensions``, which Jupyter Book resolves against the config file's own folder:
those are rewritten relative to the written file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml


def student_config(config: dict) -> dict:
    config = dict(config)
    config["title"] = f"{config.get('title', 'Book')} (student edition)"
    sphinx = dict(config.get("sphinx") or {})
    sphinx_config = dict(sphinx.get("config") or {})
    sphinx_config["hide_solutions"] = True
    sphinx_config["html_copy_source"] = False
    theme = dict(sphinx_config.get("html_theme_options") or {})
    theme["use_download_button"] = False
    sphinx_config["html_theme_options"] = theme
    config["launch_buttons"] = {"thebe": False}
    sphinx["config"] = sphinx_config
    config["sphinx"] = sphinx
    return config


def rebase_local_extensions(config: dict, source: Path, target: Path) -> dict:
    """Make ``sphinx.local_extensions`` paths, relative to ``source``'s folder, relative to ``target``'s."""
    sphinx = dict(config.get("sphinx") or {})
    local = sphinx.get("local_extensions") or {}
    if local:
        sphinx["local_extensions"] = {
            name: os.path.relpath((source.parent / path).resolve(), target.parent.resolve()) + "/"
            for name, path in local.items()
        }
        config = {**config, "sphinx": sphinx}
    return config


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    source, target = Path(argv[1]), Path(argv[2])
    config = yaml.safe_load(source.read_text(encoding="utf-8"))
    target.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Generated from {source} by scripts/student_config.py; do not edit.\n"
    config = rebase_local_extensions(student_config(config), source, target)
    target.write_text(header + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
