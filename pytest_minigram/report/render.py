"""Context dict -> one self-contained HTML page (Jinja templates shipped in the package)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from pytest_minigram import __version__
from pytest_minigram.report.context import build_context

CHART_JS = "chart.umd.min.js"
_SOURCE_MAP = re.compile(r"^//# sourceMappingURL=.*$", re.MULTILINE)


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pytest_minigram.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["json_script"] = json_script
    return env


@cache
def _asset(*parts: str) -> str:
    text = resources.files("pytest_minigram.report").joinpath(*parts).read_text("utf-8")
    # a sourceMappingURL would make devtools fetch a file that is not there
    return _SOURCE_MAP.sub("", text)


def json_script(value: Any) -> jinja2.utils.markupsafe.Markup:
    """JSON safe inside <script type="application/json">: no '</script>' can close it."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return jinja2.utils.markupsafe.Markup(text)


def _script(text: str) -> jinja2.utils.markupsafe.Markup:
    if "</script" in text.lower():
        raise ValueError("inlined script contains '</script'; it would end the tag early")
    return jinja2.utils.markupsafe.Markup(text)


def render(context: Mapping[str, Any]) -> str:
    """The HTML page for a context from build_context(); reads the context, never writes it."""
    template = _environment().get_template("report.html.j2")
    return template.render(
        ctx=context,
        version=__version__,
        chart_js=_script(_asset("vendor", CHART_JS)),
        report_js=_script(_asset("templates", "report.js")),
        report_css=jinja2.utils.markupsafe.Markup(_asset("templates", "report.css")),
    )


def render_runs(runs: Sequence[Mapping[str, Any]], baseline: Mapping[str, Any] | None = None,
                comparison: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None) -> str:
    return render(build_context(runs, baseline, comparison))


def write_report(path: str | Path, runs: Sequence[Mapping[str, Any]],
                 baseline: Mapping[str, Any] | None = None,
                 comparison: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None,
                 ) -> Path:
    """Render the runs and write the page to path (parent directories are created)."""
    html = render_runs(runs, baseline, comparison)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
