"""Pure ranking, shared by serving and offline evaluation.

Plain values in, ordered lists out: no Redis, Kafka, HTTP or torch (a test checks that this
package imports nothing of ours but ``schemas/``). The API, ``streamrec recommend`` and the
trainer's policy evaluation all call these functions, so what is served is what is measured.

- ``scores``: the one score rescaler and the one blend;
- ``filters``: seen / include / exclude / level filters;
- ``diversity``: MMR, its similarity matrix, category caps, the popularity fill;
- ``reasons``: provenance of candidates and reasons in words;
- ``policy``: a named, versioned policy as stored in a run;
- ``signals``: a user's real-time state as plain values;
- ``home``: the home policy (candidates merged, blended, filtered, diversified, filled);
- ``basket``: the basket policy.
"""
