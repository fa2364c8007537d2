"""Build libllama from upstream llama.cpp for one backend, cache it, prove it, stage it.

Only the standard library is used: this runs before any virtual environment exists and inside
pip's isolated build. The entry point is ``build_native.py`` at the repository root.
"""
