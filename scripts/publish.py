"""Publish the repository to a Hugging Face Space (docs/hosting.md, "Publishing").

    python scripts/publish.py --repo-id USER/langarith --dry-run   # list what would be uploaded
    python scripts/publish.py --repo-id USER/langarith             # create the Space if needed, upload

Uploads with ``huggingface_hub``'s ``HfApi().upload_folder`` (binary files go through LFS/Xet, as
the Hub requires; ``.gitattributes`` names them for a ``git push`` too). What goes up is decided by
``IGNORE`` below, filtered by ``huggingface_hub``'s own ``filter_repo_objects`` exactly as
``upload_folder`` filters (its default ignores added), so ``--dry-run`` lists the real upload:
never the virtual environment, caches, bytecode, build output or test output.
Authentication is huggingface_hub's own (``hf auth login`` or ``HF_TOKEN``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# fnmatch patterns on paths relative to the folder ("*" also matches "/"), as upload_folder reads them.
IGNORE = [
    ".git/*", ".venv/*", "venv/*", "*/.venv/*", ".env", "*.env",
    "__pycache__/*", "*/__pycache__/*", "*.pyc", "*.pyo",
    ".pytest_cache/*", "*/.pytest_cache/*", ".mypy_cache/*", ".ruff_cache/*",
    ".coverage", ".coverage.*", "htmlcov/*", "test-results/*", "playwright-report/*", "*.log",
    "cache/*", ".cache/*", ".carry/*", ".whl/*", "out/*", "build/*", "dist/*", "*.egg-info/*",
    ".ci/*", ".idea/*", ".vscode/*", "*.swp", ".DS_Store",
]


def planned_files(folder: str | Path, ignore: list[str] | None = None) -> list[str]:
    """The paths ``upload_folder(folder_path=folder, ignore_patterns=ignore)`` would upload, in the
    order it lists them: every file under ``folder``, filtered by ``filter_repo_objects`` with the
    library's default ignores added, as ``HfApi.upload_folder`` does."""
    from huggingface_hub.utils import filter_repo_objects
    from huggingface_hub.utils._paths import DEFAULT_IGNORE_PATTERNS

    folder = Path(folder).expanduser().resolve()
    paths = [p.relative_to(folder).as_posix() for p in sorted(folder.glob("**/*")) if p.is_file()]
    return list(filter_repo_objects(paths, ignore_patterns=list(ignore or IGNORE) + DEFAULT_IGNORE_PATTERNS))


def publish(repo_id: str, folder: Path, *, private: bool = False, message: str = "Publish langarith"):
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    return api.upload_folder(repo_id=repo_id, repo_type="space", folder_path=str(folder),
                             ignore_patterns=list(IGNORE), commit_message=message)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Upload this repository to a Hugging Face Space.")
    p.add_argument("--repo-id", required=True, help="the Space, OWNER/NAME")
    p.add_argument("--folder", default=str(ROOT), help="what to upload (default: this repository)")
    p.add_argument("--dry-run", action="store_true", help="list the files that would be uploaded")
    p.add_argument("--private", action="store_true")
    args = p.parse_args(argv)
    folder = Path(args.folder)
    if not (folder / "README.md").is_file() or not (folder / "app.py").is_file():
        print(f"error: {folder} has no README.md and app.py: not a Space folder", file=sys.stderr)
        return 2
    files = planned_files(folder)
    if args.dry_run:
        total = sum((folder / f).stat().st_size for f in files)
        for f in files:
            print(f)
        print(f"{len(files)} files, {total / 1e6:.1f} MB would go to the Space {args.repo_id}",
              file=sys.stderr)
        return 0
    info = publish(args.repo_id, folder, private=args.private)
    print(f"uploaded {len(files)} files: {getattr(info, 'commit_url', info)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
