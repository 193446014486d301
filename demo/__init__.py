"""The demo bucket and the media generator that the demo, the tests and the benchmarks share.

Kept out of `media/`: generating video needs PyAV (FFmpeg), which probing never does, so PyAV is the optional
`demo` extra rather than a dependency of every deployment (deploy/Dockerfile does not install it).
"""

#: What a person sees when the `demo` extra is missing: the fix, not a traceback.
MISSING_DEMO_EXTRA = (
    "the demo media generator needs PyAV, which is not installed: pip install 'bucket-sync[demo]' "
    "(or `uv sync --extra demo`; `make setup` installs it)"
)
