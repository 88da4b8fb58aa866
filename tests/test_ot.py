"""OT pairing: partners stay in their group, known matchings are recovered, padding is inert."""

from __future__ import annotations

import numpy as np
import pytest

from perturbjax.ot import PairingConfig, pair_cells, sinkhorn_couplings


def _interleaved(rng, sizes):
    """Cells of several (context, condition) groups shuffled together, as files store them."""
    coords, context, condition = [], [], []
    for (c, p), n in sizes.items():
        centre = rng.normal(0, 3, 6)
        coords.append(rng.normal(centre, 1.0, (n, 6)))
        context += [c] * n
        condition += [p] * n
    order = rng.permutation(sum(sizes.values()))
    return (np.concatenate(coords)[order], np.array(context)[order],
            np.array(condition)[order])


@pytest.mark.parametrize("exact_below", [0, 10_000], ids=["sinkhorn", "exact"])
def test_every_partner_shares_the_control_cells_context_and_dose(exact_below):
    rng = np.random.default_rng(0)
    sizes = {("B", "0"): 300, ("B", "1"): 280, ("B", "30"): 150, ("T", "0"): 120,
             ("T", "1"): 330, ("T", "30"): 90, ("NK", "0"): 60, ("NK", "30"): 70}
    coords, context, dose = _interleaved(rng, sizes)
    pairs = pair_cells(coords, context, dose, "0", PairingConfig(exact_below=exact_below))
    assert np.all(dose[pairs.control] == "0")
    assert np.all(context[pairs.partner] == context[pairs.control])
    assert np.all(context[pairs.partner] == pairs.context)
    assert np.all(dose[pairs.partner] == pairs.condition)
    # every control cell once per dose its context has (NK has no dose 1)
    expected = sum(n * sum(1 for (c2, p2) in sizes if c2 == c and p2 != "0")
                   for (c, p), n in sizes.items() if p == "0")
    assert len(pairs.control) == expected


@pytest.mark.parametrize("exact_below", [0, 10_000], ids=["sinkhorn", "exact"])
def test_a_shifted_permutation_is_recovered(exact_below):
    rng = np.random.default_rng(1)
    n = 300
    x = rng.normal(size=(n, 8))
    perm = rng.permutation(n)
    y = x[perm] + 0.02 * rng.normal(size=(n, 8)) + 1.5
    pairs = pair_cells(np.concatenate([x, y]), np.array(["A"] * 2 * n),
                       np.array(["ctrl"] * n + ["stim"] * n), "ctrl",
                       PairingConfig(exact_below=exact_below))
    truth = n + np.argsort(perm)[pairs.control]
    assert np.mean(pairs.partner == truth) > 0.99


def test_exact_matching_reuses_scarce_perturbed_cells_evenly():
    rng = np.random.default_rng(2)
    coords = rng.normal(size=(25, 3))
    pairs = pair_cells(coords, np.array(["A"] * 25), np.array(["c"] * 19 + ["p"] * 6), "c")
    uses = np.bincount(pairs.partner - 19, minlength=6)
    assert uses.sum() == 19 and uses.max() <= 4  # ceil(19 / 6)


def test_padding_with_zero_weights_leaves_the_coupling_unchanged():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 5)), rng.normal(size=(30, 5)) + 1
    plain, _ = sinkhorn_couplings(x[None], y[None], np.full((1, 40), 1 / 40),
                                   np.full((1, 30), 1 / 30), 0.05, 2000)
    pad = lambda a, n: np.concatenate([a, np.zeros((n - len(a),) + a.shape[1:])])  # noqa: E731
    padded, converged = sinkhorn_couplings(
        pad(x, 64)[None], pad(y, 64)[None], pad(np.full(40, 1 / 40), 64)[None],
        pad(np.full(30, 1 / 30), 64)[None], 0.05, 2000)
    assert bool(converged[0])
    np.testing.assert_allclose(np.asarray(padded)[0, :40, :30], np.asarray(plain)[0], atol=1e-6)
    assert float(np.asarray(padded)[0, 40:].sum() + np.asarray(padded)[0, :, 30:].sum()) == 0.0


def test_sampled_partners_stay_in_the_group_and_a_too_large_group_is_refused():
    rng = np.random.default_rng(4)
    coords, context, condition = _interleaved(rng, {("A", "c"): 300, ("A", "p"): 300,
                                                    ("B", "c"): 280, ("B", "p"): 310})
    pairs = pair_cells(coords, context, condition, "c",
                       PairingConfig(exact_below=0, sample=True), seed=1)
    assert np.all(context[pairs.partner] == context[pairs.control])
    with pytest.raises(ValueError, match="exceeds the largest pairing bucket"):
        pair_cells(coords, context, condition, "c",
                   PairingConfig(exact_below=0, buckets=(256,)))
