"""Each ported model has exactly the trainable parameters of its published code.

The published counts are computed from the published layer lists, written out here from the
published files (named per test; docs/ports.md has the layer-by-layer tables), never from our
modules. Our DenseBlock drops the bias of a Dense layer that feeds a BatchNorm (BatchNorm
subtracts it again, so its gradient is exactly zero); those biases are subtracted by name.
BatchNorm's running statistics are buffers in PyTorch and `batch_stats` in Flax: not counted.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from perturbjax.models import mtae, scbutterfly, scgen, scpregan

GENES = 37  # odd, so that no layer width coincides with the gene count


def linear(n_in: int, n_out: int) -> int:
    """PyTorch `nn.Linear(n_in, n_out)`: weight and bias."""
    return n_in * n_out + n_out


def batch_norm(n: int) -> int:
    """PyTorch `nn.BatchNorm1d(n)`: weight and bias (running statistics are buffers)."""
    return 2 * n


def our_count(module, *inputs, rngs=("dropout", "latent")) -> int:
    keys = {name: jax.random.PRNGKey(i) for i, name in enumerate(("params", *rngs))}
    variables = jax.eval_shape(functools.partial(module.init, train=False), keys, *inputs)
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(
        variables["params"]))


def test_scgen_has_the_parameters_of_scgen_2_1_0():
    # scgen 2.1.0 `_scgenvae.py` SCGENVAE(n_hidden=800, n_latent=100, n_layers=2):
    # z_encoder = scvi.nn.Encoder (scvi-tools 0.19 `nn/_base_components.py`): FCLayers with
    # layers_dim [G, 800, 800], each Linear -> BatchNorm1d -> LeakyReLU -> Dropout, then
    # mean_encoder and var_encoder Linear(800, 100).
    encoder = (linear(GENES, 800) + batch_norm(800) + linear(800, 800) + batch_norm(800)
               + 2 * linear(800, 100))
    # decoder = DecoderSCGEN (`_base_components.py`): FCLayers [100, 800, 800], then
    # linear_out = nn.Linear(800, G).
    decoder = linear(100, 800) + batch_norm(800) + linear(800, 800) + batch_norm(800) \
        + linear(800, GENES)
    dropped_biases = 4 * 800  # the four Linear layers that feed a BatchNorm
    vae = scgen.ScGenVAE(scgen.ScGenConfig(), GENES)
    assert our_count(vae, jnp.zeros((4, GENES))) == encoder + decoder - dropped_biases


def test_scvidr_has_the_parameters_of_the_published_vidr_model():
    # scVIDR `vidr/vidr.py` VIDR(hidden_dim=800, latent_dim=100, n_hidden_layers=2,
    # linear_decoder=False) -> `vidr/vidr_model.py` VIDRModel -> `vidr/modules.py`:
    # VIDREncoder: Linear(G, 800) BN(800), one shared `fclayers` Linear(800, 800) BN(800),
    # mean and log_var Linear(800, 100). VIDRDecoder: Linear(100, 800) BN(800), fclayers
    # Linear(800, 800) BN(800), Linear(800, G). The unused `lin_decoder`
    # (Linear(100, G) + BatchNorm1d(G)) is also registered in the module, but only the
    # non-linear decoder takes part in training and prediction.
    encoder = linear(GENES, 800) + batch_norm(800) + linear(800, 800) + batch_norm(800) \
        + 2 * linear(800, 100)
    decoder = linear(100, 800) + batch_norm(800) + linear(800, 800) + batch_norm(800) \
        + linear(800, GENES)
    vae = scgen.ScGenVAE(scgen.ScGenConfig(), GENES)  # scVIDR trains scGen's network
    assert our_count(vae, jnp.zeros((4, GENES))) == encoder + decoder - 4 * 800


@pytest.mark.parametrize("variant", ["mtae", "mtae_adv"])
def test_the_multi_task_original_configuration_has_the_source_code_layers(variant):
    # The source document's code as described in the project's spec (the code itself is not
    # public): encoder Dense(G, 256) BN(256), Dense(256, 128); decoder Dense(128, 256)
    # BN(256), FiLM generators gamma, beta = Dense(N + 1, 256) on the one-hot condition,
    # Dense(256, G). MTAeAdv adds a latent discriminator: spectral-norm Dense(128, 32),
    # Dense(32, 1).
    conditions = 3
    expected = (linear(GENES, 256) + batch_norm(256) + linear(256, 128)
                + linear(128, 256) + batch_norm(256) + 2 * linear(conditions, 256)
                + linear(256, GENES))
    if variant == "mtae_adv":
        expected += linear(128, 32) + linear(32, 1)
    config = mtae.VARIANTS[variant][0]["original"][0]
    model = mtae.MTAe(config, GENES)
    condition = jnp.zeros((4, conditions))
    assert our_count(model, jnp.zeros((4, GENES)), condition) == expected - 2 * 256


def test_scpregan_has_the_parameters_of_the_published_package():
    # XiajieWei/scPreGAN `scPreGAN/model/`, Model(n_features=G, z_dim=16,
    # min_hidden_size=256): Encoder.py Linear(G, 512) BN(512), Linear(512, 256) BN(256),
    # Linear(256, 16); Generator.py (twice) Linear(16, 256) BN(256), Linear(256, 512) BN(512),
    # Linear(512, G) BN(G); Discriminator.py (twice) spectral-norm Linear(G, 512),
    # spectral-norm Linear(512, 256), Linear(256, 1) (spectral_norm keeps the weight as one
    # parameter; its u, v vectors are buffers).
    encoder = (linear(GENES, 512) + batch_norm(512) + linear(512, 256) + batch_norm(256)
               + linear(256, 16))
    generator = (linear(16, 256) + batch_norm(256) + linear(256, 512) + batch_norm(512)
                 + linear(512, GENES) + batch_norm(GENES))
    critic = linear(GENES, 512) + linear(512, 256) + linear(256, 1)
    dropped_biases = (512 + 256) + 2 * (256 + 512 + GENES)  # Linear layers before a BN
    model = scpregan.ScPreGAN(scpregan.ScPreGANConfig(), GENES)
    cells = jnp.zeros((4, GENES))
    assert our_count(model, cells, cells, rngs=()) == (
        encoder + 2 * generator + 2 * critic - dropped_biases)


def test_scbutterfly_has_the_parameters_of_the_published_perturbation_model():
    # BioX-NKU/scButterfly `scButterfly/train_model_perturb.py` Model, with the sizes of the
    # perturbation tutorial (`Perturb_unpaired_scButterfly-T.ipynb`); `model_component.py`:
    # NetBlock layers are Linear -> BatchNorm1d -> activation.
    control_ae = (linear(GENES, 256) + batch_norm(256) + linear(256, 128) + batch_norm(128)
                  + linear(128, 256) + batch_norm(256) + linear(256, GENES)
                  + batch_norm(GENES))
    perturbed_ae = (linear(GENES, 128) + batch_norm(128) + linear(128, 128) + batch_norm(128)
                    + linear(128, 128) + batch_norm(128) + linear(128, GENES)
                    + batch_norm(GENES))
    block = linear(128, 128) + batch_norm(128)
    single_translators = 2 * 3 * block  # Single_Translator: mu, d, decoder
    joint_translator = 6 * block  # Translator: mu and d per modality, two decoders
    discriminators = 2 * (linear(128, 1) + batch_norm(1))  # NetBlock([128, 1], Sigmoid)
    # Every Linear feeds a BatchNorm, so every bias is dropped here.
    biases = (256 + 128 + 256 + GENES) + (128 + 128 + 128 + GENES) + 12 * 128 + 2 * 1
    model = scbutterfly.ScButterfly(scbutterfly.ScButterflyConfig(), GENES)
    cells = jnp.zeros((4, GENES))
    assert our_count(model, cells, cells) == (control_ae + perturbed_ae + single_translators
                                              + joint_translator + discriminators - biases)
