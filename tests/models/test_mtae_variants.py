"""The multi-task family's variants: adversarial, Gaussian-adversarial, variational, OT pairs."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from perturbjax.data import SpeciesConfig, make_species_data
from perturbjax.data.designs import SPECIES_SPEC
from perturbjax.models import get_model, mtae
from perturbjax.models.fitting import (
    ConditionEncoding,
    Task,
    fit_on_anndata,
    fit_on_pairs,
    pair_table,
    pairing_coordinates,
)
from perturbjax.ot import PairingConfig
from perturbjax.train import TrainConfig, make_optimizer

LABELS = ("control", "stimulated")
# No dropout anywhere: a training step is then a deterministic function of its inputs.
DETERMINISTIC = mtae.MTAeConfig(hidden=(16,), latent=6, dropout=0.0, input_dropout=0.0,
                                discriminator_dropout=0.0)
TINY_TRAIN = TrainConfig(epochs=2, batch_size=16, learning_rates=(1e-3,), patience=None,
                         select_best=False)


def _batch(n=16, genes=12, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": jnp.asarray(rng.normal(size=(n, genes)), jnp.float32),
            "condition": jnp.asarray(np.arange(n) % 2, jnp.int32)}


def _setup(config, batch):
    objective = mtae.build(config, Task.of(batch["x"].shape[1], LABELS, "control"))
    params, state = objective.init(jax.random.PRNGKey(0), batch)
    tx = make_optimizer(1e-2, TINY_TRAIN)
    return objective, params, state, objective.init_optimizer(tx, params), tx


def _changed(before, after):
    return any(not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(before),
                                                      jax.tree_util.tree_leaves(after),
                                                      strict=True))


def test_every_variant_is_registered_with_original_default_and_reconstruction_configurations():
    assert set(mtae.VARIANTS) == {"mtae", "mtae_adv", "mtae_advg", "mtvae", "mtae_ot",
                               "mtae_ot_response", "mtae_plus_ot", "mtvae_ot", "mtvae_plus_ot"}
    for family in map(get_model, mtae.VARIANTS):
        assert set(family.configs) == {"original", "default", "reconstruction"}
        # The default differs from `reconstruction` in how it selects, nothing else.
        (model, train), (before, before_train) = (family.config("default"),
                                                  family.config("reconstruction"))
        assert model == before and (train.inner_contexts, before_train.inner_contexts) == (2, 0)
        assert dataclasses.replace(train, inner_contexts=0) == before_train
    assert get_model("mtae_ot_response").config("default")[0].decode_response
    assert get_model("mtae_ot_response").pairing == "ot"
    adv, adv_train = get_model("mtae_adv").config("original")
    assert (adv.discriminator, adv.adversarial_weight, adv.discriminator_hidden,
            adv.discriminator_dropout) == ("condition", 0.01, (32,), 0.1)
    assert (adv.pretrain_epochs, adv.discriminator_epochs, adv_train.epochs) == (400, 400, 900)
    assert get_model("mtae_advg").config("default")[0].discriminator == "gaussian"
    vae, vae_train = get_model("mtvae").config("original")
    assert vae.variational and (vae.kl_weight, vae.kl_batch) == (0.004, 32)
    assert (vae_train.learning_rates, vae_train.batch_size) == ((6.6e-6,), 32)
    assert {n: get_model(n).pairing for n in ("mtae", "mtae_ot", "mtvae_plus_ot")} == {
        "mtae": "none", "mtae_ot": "ot", "mtvae_plus_ot": "plus_ot"}
    assert get_model("mtvae_ot").config("default")[0].variational


def test_original_kl_weight_is_scaled_by_batch_over_training_cells():
    vae = get_model("mtvae").config("original")[0]
    assert mtae.build(vae, Task.of(10, LABELS, "control", n_cells=3200)).kl_weight == pytest.approx(
        0.004 * 32 / 3200)
    with pytest.raises(ValueError, match="must give n_cells"):
        mtae.build(vae, Task.of(10, LABELS, "control"))


def test_log_dose_conditioning_reads_log1p_of_the_dose_labels():
    vectors = mtae.condition_vectors(("0", "0.1", "30"), "log_dose")
    np.testing.assert_allclose(vectors[:, 0], np.log1p([0.0, 0.1, 30.0]), rtol=1e-6)
    np.testing.assert_array_equal(mtae.condition_vectors(LABELS, "one_hot"), np.eye(2))
    with pytest.raises(ValueError, match="numeric condition labels"):
        mtae.condition_vectors(LABELS, "log_dose")


def test_adversarial_step_with_zero_weight_is_the_plain_autoencoder_step():
    """The network half of the alternating step is exactly MTAe's step when lambda = 0."""
    batch = _batch()
    adv = dataclasses.replace(DETERMINISTIC, discriminator="condition", adversarial_weight=0.0)
    objective, params, state, opt, tx = _setup(adv, batch)
    new, _, _, loss = jax.jit(lambda *a: objective.train_step(*a, tx, jnp.int32(0)))(
        params, state, opt, batch, jax.random.PRNGKey(3))
    plain = mtae.MTAeObjective(objective.module, objective.condition_vectors,
                               objective.control_code)
    network = {k: v for k, v in params.items() if k != mtae.DISCRIMINATOR}

    @jax.jit
    def plain_step(params, network):
        (loss, _), grads = jax.value_and_grad(plain.loss, has_aux=True)(
            params, state, batch, jax.random.PRNGKey(3))
        grads = {k: v for k, v in grads.items() if k != mtae.DISCRIMINATOR}
        updates, _ = tx.update(grads, tx.init(network), network)
        return loss, optax.apply_updates(network, updates)

    expected_loss, expected = plain_step(params, network)
    assert float(loss) == pytest.approx(float(expected_loss), rel=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves({k: new[k] for k in expected}),
                    jax.tree_util.tree_leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["condition", "gaussian"])
def test_original_schedule_trains_autoencoder_then_discriminator_then_both(kind):
    batch = _batch()
    config = dataclasses.replace(DETERMINISTIC, discriminator=kind, pretrain_epochs=1,
                                 discriminator_epochs=1)
    objective, params, state, opt, tx = _setup(config, batch)
    for epoch, network_moves, critic_moves in ((0, True, False), (1, False, True),
                                               (2, True, True)):
        new, _, _, _ = objective.train_step(params, state, opt, batch, jax.random.PRNGKey(1), tx,
                                            jnp.int32(epoch))
        critic = mtae.DISCRIMINATOR
        assert _changed(params[critic], new[critic]) == critic_moves, epoch
        assert _changed(params["encoder"], new["encoder"]) == network_moves, epoch
        assert _changed(params["decoder"], new["decoder"]) == network_moves, epoch


def test_discriminator_steps_learn_to_tell_control_from_perturbed_latents():
    """Shifted latents of perturbed cells become separable by the critic (its BCE falls)."""
    batch = _batch(n=64)
    batch["x"] = batch["x"] + 3.0 * batch["condition"][:, None]  # perturbed cells shifted
    config = dataclasses.replace(DETERMINISTIC, discriminator="condition", pretrain_epochs=0,
                                 discriminator_epochs=100)
    objective, params, state, opt, tx = _setup(config, batch)
    step = jax.jit(lambda *args: objective.train_step(*args, tx, jnp.int32(0)))
    z = objective.apply_train(params, state, jax.random.PRNGKey(0),
                              *objective.inputs(batch))[0].latent  # what the critic trains on
    labels = (batch["condition"] == 0).astype(jnp.float32)

    def critic_bce(params, state):
        logits = objective.apply_eval(params, state, z, method="discriminate")
        return float(optax.sigmoid_binary_cross_entropy(logits, labels).mean())

    before = critic_bce(params, state)
    for i in range(150):
        params, state, opt, _ = step(params, state, opt, batch, jax.random.PRNGKey(i))
    assert critic_bce(params, state) < 0.5 * before


def test_variational_model_samples_in_training_and_predicts_from_the_mean():
    batch = _batch()
    config = dataclasses.replace(DETERMINISTIC, variational=True, kl_weight=1e-3)
    objective, params, state, _, _ = _setup(config, batch)
    inputs = objective.inputs(batch)
    mean, log_variance = objective.apply_eval(params, state, inputs[0],
                                              method=lambda m, x, train: m.encoder(x, train=train))
    out = objective.apply_eval(params, state, *inputs)
    np.testing.assert_array_equal(out.latent, mean)
    kl = 0.5 * np.sum(np.exp(log_variance) + mean**2 - 1 - log_variance, axis=-1)
    np.testing.assert_allclose(out.kl, kl, rtol=1e-5)
    np.testing.assert_array_equal(objective.predict(params, state, batch), out.reconstruction)
    sampled = [objective.apply_train(params, state, jax.random.PRNGKey(k), *inputs)[0].latent
               for k in (0, 1)]
    assert not np.allclose(sampled[0], sampled[1])


@pytest.fixture(scope="module")
def species():
    return make_species_data(SpeciesConfig(n_genes=40, cells_per_group=40, n_response_genes=10))


def test_pair_table_pairs_each_control_within_its_species_and_condition(species):
    encoding = ConditionEncoding.from_adata(species, SPECIES_SPEC)
    rows = np.arange(species.n_obs)[::2]  # a subset, as for the training split
    table = pair_table(rows, pairing_coordinates(species), species, SPECIES_SPEC, encoding,
                       PairingConfig())
    source, target = np.asarray(table["source_row"]), np.asarray(table["target_row"])
    codes = np.asarray(table["condition"])
    obs = species.obs
    assert set(source) <= set(rows) and set(target) <= set(rows)
    assert (obs["condition"].to_numpy()[source] == "unst").all()
    np.testing.assert_array_equal(obs["species"].to_numpy()[source],
                                  obs["species"].to_numpy()[target])
    labels = np.asarray(encoding.labels)[codes]
    np.testing.assert_array_equal(obs["condition"].to_numpy()[target], labels)
    controls = rows[obs["condition"].to_numpy()[rows] == "unst"]
    assert sorted(source[labels == "unst"]) == sorted(controls)  # each control -> itself
    assert (source[labels == "unst"] == target[labels == "unst"]).all()
    assert sorted(source[labels == "LPS6"]) == sorted(controls)  # and -> one partner


def test_plus_ot_fine_tuning_starts_from_the_pretrained_parameters(species):
    encoding = ConditionEncoding.from_adata(species, SPECIES_SPEC)
    config = dataclasses.replace(DETERMINISTIC, hidden=(8,))
    objective = mtae.build(config, Task.from_pool(species, SPECIES_SPEC, encoding))
    pretrained = fit_on_anndata(objective, TINY_TRAIN, species, SPECIES_SPEC, encoding, [1, 2])
    # A step of ~1e-12 (Adam's steps are about the learning rate): the fit stays where it began.
    barely = dataclasses.replace(TINY_TRAIN, epochs=1, learning_rates=(1e-12,))
    tuned = fit_on_pairs(objective, barely, species, SPECIES_SPEC, encoding, [1, 2],
                         warm_start=pretrained)
    for a, b in zip(jax.tree_util.tree_leaves(tuned.params),
                    jax.tree_util.tree_leaves(pretrained.params), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="same folds and seeds"):
        fit_on_pairs(objective, barely, species, SPECIES_SPEC, encoding, [1],
                     warm_start=pretrained)
