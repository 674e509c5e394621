"""The README's figures, drawn from the shipped results with the page's own plotly code:

    python docs/figures.py            # writes docs/lowres.png

Plotly's static export needs kaleido (not in the stack); the page's figure is instead written as
HTML (plotly.js inline) and photographed by the Debian chromium that the browser tests drive.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CHROMIUM = "/usr/bin/chromium"


def png(fig, out: Path, width: int = 1300, height: int = 430) -> None:
    fig.update_layout(width=width, height=height)
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "fig.html"
        fig.write_html(str(html), include_plotlyjs=True, full_html=True, config={"displayModeBar": False})
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--window-size={width + 20},{height + 20}", f"--screenshot={out}",
                        "--virtual-time-budget=5000", html.as_uri()],
                       check=True, capture_output=True, timeout=120)


def main() -> int:
    from langarith import plots

    bundle = REPO / "assets" / "bundle"
    low = json.loads((bundle / "results" / "lowres.json").read_text(encoding="utf-8"))
    out = REPO / "docs" / "lowres.png"
    png(plots.lowres_figure(low), out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
