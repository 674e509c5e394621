"""Layer 4: the Gradio page, one module per panel or tab (handlers are plain functions of
``(stack, inputs)`` beside the panel's layout), ``common`` for what they share, ``demo`` to lay
out the header and chain the panels. Nothing per person lives on the server: every event carries
its own inputs, and the engine merges under a lock."""

from .demo import CSS, LAUNCH, build_demo

__all__ = ["CSS", "LAUNCH", "build_demo"]
