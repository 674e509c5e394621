"""Gradio entry point (also the Hugging Face Spaces `app_file`).

    python app.py                      # the embedded bundle in assets/bundle
    LANGARITH_BUNDLE=DIR python app.py # another bundle folder
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline by default: no phoning home

from langarith.cli import launch_app  # noqa: E402

if __name__ == "__main__":
    launch_app()
