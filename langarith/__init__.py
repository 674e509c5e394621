import sys

# The project never uses the `kernels` package, and transformers 4.57.6 imports it when present
# and can fetch Hub kernels through it (CVE-2026-4372): make it unimportable in this process
# before transformers is first imported. What a config may ask for is checked in trust.py.
sys.modules.setdefault("kernels", None)
