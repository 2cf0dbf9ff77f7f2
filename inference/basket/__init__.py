"""The basket policy's serving side: what does I/O or holds serving state.

The policy itself (scoring, segments, assortment, cover, reasons) is pure and lives in
``ranking.basket``, shared with the offline evaluation; the profile file format is
``schemas.basket_profiles``. Here: ``redis_signals`` (a basket's signals in one Redis round
trip, ``fetch.lua``), ``serving`` (embeddings, centroids and cover model of the serving run)
and ``profiles`` (the active profile of this process).
"""
