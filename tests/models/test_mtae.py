import jax
import jax.numpy as jnp
import numpy as np

from perturbjax.models import get_model, mtae
from perturbjax.models.fitting import Task
from perturbjax.nn.layers import FiLM


def _init(config, n_genes=30, n_conditions=3, batch=4):
    objective = mtae.build(config, Task.of(n_genes, [f"c{i}" for i in range(n_conditions)], "c0"))
    data = {"x": jnp.ones((batch, n_genes)), "condition": jnp.zeros(batch, jnp.int32)}
    params, state = objective.init(jax.random.PRNGKey(0), data)
    return objective, params, state, data


def test_original_configuration_has_the_published_architecture():
    model, train = mtae.ORIGINAL
    architecture = (model.hidden, model.latent, model.dropout, model.input_dropout)
    assert architecture == ((256,), 128, 0.5, 0.2)
    assert model.film_mode == "original" and model.latent_activation and model.output_activation
    assert (train.epochs, train.batch_size, train.learning_rates, train.warmup_steps) == (
        400, 64, (1e-5,), 100)
    assert train.patience is None and not train.select_best
    _, params, state, _ = _init(model)
    shapes = jax.tree_util.tree_map(jnp.shape, params)
    enc, dec = shapes["encoder"], shapes["decoder"]
    assert enc["DenseBlock_0"]["Dense_0"]["kernel"] == (30, 256)
    assert enc["Dense_0"]["kernel"] == (256, 128)
    assert dec["DenseBlock_0"]["Dense_0"]["kernel"] == (128, 256)
    assert dec["FiLM_0"]["gamma"]["kernel"] == (3, 256)  # one generator per modulated layer
    assert dec["Dense_0"]["kernel"] == (256, 30)
    assert "batch_stats" in state


def test_default_configuration_is_registered_with_validation_selection():
    model, train = get_model("mtae").config("default")
    assert model.film_mode == "affine" and not model.latent_activation
    assert len(train.learning_rates) > 1 and train.select_best


def test_affine_film_is_the_identity_when_its_heads_are_zero():
    film = FiLM(mode="affine")
    h, c = jnp.arange(6.0).reshape(2, 3), jnp.eye(2)
    params = film.init(jax.random.PRNGKey(0), h, c)
    zeroed = jax.tree_util.tree_map(jnp.zeros_like, params)
    np.testing.assert_array_equal(film.apply(zeroed, h, c), h)


def test_original_film_applies_leaky_relu_to_gamma_and_beta():
    film = FiLM(mode="original")
    h, c = jnp.ones((1, 2)), jnp.array([[1.0]])
    params = {"params": {"gamma": {"kernel": jnp.array([[-1.0, 2.0]]), "bias": jnp.zeros(2)},
                         "beta": {"kernel": jnp.array([[3.0, -4.0]]), "bias": jnp.zeros(2)}}}
    np.testing.assert_allclose(film.apply(params, h, c), [[-0.01 + 3.0, 2.0 - 0.04]], rtol=1e-6)


def test_prediction_depends_on_the_condition_and_is_deterministic_in_eval():
    objective, params, state, data = _init(mtae.DEFAULT[0])
    as_control = objective.predict(params, state, data)
    as_perturbed = objective.predict(params, state, {**data, "condition": jnp.ones(4, jnp.int32)})
    assert as_control.shape == (4, 30)
    assert not np.allclose(as_control, as_perturbed)
    np.testing.assert_array_equal(as_control, objective.predict(params, state, data))


def test_reconstruction_loss_is_the_mean_squared_error():
    objective, params, state, data = _init(mtae.DEFAULT[0])
    recon = objective.predict(params, state, data)
    expected = float(jnp.mean((recon - data["x"]) ** 2))
    assert float(objective.validation_loss(params, state, data)) == np.float32(expected)
