"""Pure domain code: probing bytes into facts, and judging facts against rule profiles.

Nothing here imports Dagster, a cloud SDK, or anything else of ours outside `media`, so every piece can be tested on
bytes in memory and reused outside the code location.
"""
