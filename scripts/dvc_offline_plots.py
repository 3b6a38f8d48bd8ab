"""``make install``'s step for `dvc plots show` and `dvc plots diff` without a network: DVC's page loads vega,
vega-lite and vega-embed from a CDN, so on a machine without internet it draws no chart. This writes DVC's page
template with the three libraries inline (vl-convert's JavaScript bundle, a PyPI package) into the venv, and names
it in the project's ``.dvc/config.local`` (``plots.html_template``: local to the clone, as the venv is).

    .venv/bin/python scripts/dvc_offline_plots.py [--repo DIR]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = Path(sys.prefix) / "share" / "rosetta" / "dvc_plots_offline.html"

# DVC's own page (dvc_render.html.PAGE_HTML) without its {scripts} placeholder, where the CDN script tags go. The
# bundle runs inside a function: its top-level names stay out of the page's scope, where each plot's script
# declares its own; it puts vegaEmbed, vega and vegaLite on window, which those scripts call.
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <title>DVC Plot</title>
    <script type="text/javascript">(function () {
BUNDLE
})();</script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def template_html() -> str:
    """DVC's page template with vega, vega-lite and vega-embed inline."""
    import vl_convert

    return PAGE.replace("BUNDLE", vl_convert.javascript_bundle())


def install(repo: Path) -> Path:
    """Write the template (once per venv) and name it in ``repo``'s DVC config; returns the template."""
    if not TEMPLATE.is_file():
        TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
        tmp = TEMPLATE.with_name(f".{TEMPLATE.name}.{os.getpid()}")
        tmp.write_text(template_html(), encoding="utf-8")
        os.replace(tmp, TEMPLATE)
    dvc = Path(sys.executable).parent / "dvc"
    subprocess.run([str(dvc), "config", "--local", "plots.html_template", str(TEMPLATE)], cwd=repo, check=True,
                   env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    return TEMPLATE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT, help="the DVC project (default: this one)")
    args = parser.parse_args()
    print(f"dvc plots: charts drawn offline, with {install(args.repo)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
