"""How every seed of an evaluation is derived from its base seed (recorded with the results).

Seeds depend on the base seed and on the *images* a batch covers (``start``, ``stop``), not on a
loop counter, so any batch can be recomputed alone, in any process, from the record.
"""

from __future__ import annotations

from typing import Any

from irad.evaluate.specs import digest

#: Recorded with results: how every seed of a run is made from the base seed.
SEED_SCHEME = (
    "seed(parts) = int(sha256(json([base_seed, *parts]))[:16], 16) mod 2**63, json = "
    "key-sorted compact JSON. Images [start, stop) of the evaluation set form one batch "
    "(randomness.batches). The attack on a batch uses parts ('attack', seed_key, start, stop) "
    "(recorded per batch as attacks[...].seeds; the attack runs as attack(x, y, seed=s) with "
    "torch's global RNG seeded with s); seed_key (attacks[...].seed_key) digests what the "
    "adversarial cache key digests except the attack code's fingerprint and the device, so an "
    "edit of the attack code that keeps its behaviour keeps the seeds; the cache's verification "
    "pass uses ('verify', seed_key, start, stop); scoring uses ('score', task_key, start, stop, "
    "draw), task_key = digest({task: seed_key, or the clean images' key likewise without code "
    "and device, defense: its identity}), so a random defense is scored with randomness the "
    "attack never saw; gradient "
    "statistics use ('gradients', defense fingerprint)"
)


def derive_seed(base: int, *parts: Any) -> int:
    """A 63-bit seed from the base seed and a path of labels (see :data:`SEED_SCHEME`).

    Example:
        >>> derive_seed(0, "attack", "k", 0, 100) == derive_seed(0, "attack", "k", 0, 100)
        True
        >>> derive_seed(0, "attack", "k", 0, 100) == derive_seed(1, "attack", "k", 0, 100)
        False
    """
    return int(digest([base, *parts])[:16], 16) % (2**63)
