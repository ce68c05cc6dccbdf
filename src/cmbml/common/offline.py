"""Vega for the offline HTML of ``dvc plots show``.

DVC's page loads Vega, Vega-Lite and Vega-Embed from a CDN, so on a node without network it stays
blank. The repository's template (``plots.html_template`` in ``.dvc/config``, ``conf/plots/offline.html``)
loads them instead from :data:`VEGA_BUNDLE` in the virtualenv: one script that ``vl-convert-python``
bundles from the copies it carries (nothing is downloaded). Set-up writes it: ``python -m cmbml.common.offline``.
"""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

from cmbml.common.gate import VEGA_LITE_VERSION, vega_javascript

VEGA_BUNDLE = Path(sys.prefix) / "share" / "cmbml" / "vega-embed.js"
"""Where set-up writes the bundle; the template loads it as ``../.venv/share/cmbml/vega-embed.js`` from
``dvc_plots/index.html``, which ``dvc plots show`` writes in the repository beside ``.venv``."""


def bundle_header() -> str:
    """First line of the bundle: which libraries, from which ``vl-convert-python`` (a stale one is rewritten)."""
    import vl_convert

    return (f"/* Vega {vl_convert.get_vega_version()}, Vega-Lite {VEGA_LITE_VERSION}, Vega-Embed "
            f"{vl_convert.get_vega_embed_version()}: bundled by vl-convert-python {version('vl-convert-python')} */")


def write_vega_bundle(dest: str | Path = VEGA_BUNDLE) -> Path:
    """Write the Vega bundle (:func:`~cmbml.common.gate.vega_javascript`) to ``dest``, unless the one there comes
    from the same ``vl-convert-python``. Returns ``dest``."""
    dest = Path(dest)
    header = bundle_header()
    if dest.is_file():
        with dest.open(encoding="utf-8") as fh:
            if fh.readline().rstrip("\n") == header:
                return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    tmp.write_text(f"{header}\n{vega_javascript()}", encoding="utf-8")
    tmp.replace(dest)  # a page never sees half a bundle
    return dest


if __name__ == "__main__":
    print(f"Vega for offline DVC plots: {write_vega_bundle()}")
