"""Mult-VAE trains on sparse rows: the same network as the dense one, and older runs still load."""
import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

from trainer.models.multvae import SparseRows, _build_net, _from_dense_layout  # noqa: E402


@pytest.mark.parametrize("hidden", [0, 8])
def test_sparse_batch_encodes_like_the_dense_row(hidden):
    matrix = sp.random(6, 12, density=0.3, format="csr", random_state=1, dtype=np.float32)
    matrix.data[:] = 1.0
    torch.manual_seed(0)
    net = _build_net(12, latent=4, hidden=hidden)
    users = np.array([4, 0, 2])
    batch = SparseRows(matrix, users, torch.device("cpu"))
    dense_mu = net(torch.as_tensor(matrix[users].toarray()))[2]
    first = net.items.sparse(batch.items, batch.offsets, batch.norm_values)
    sparse_mu = net.encoder(first).chunk(2, dim=-1)[0]
    assert torch.allclose(dense_mu, sparse_mu, atol=1e-6)


@pytest.mark.parametrize("hidden", [0, 8])
def test_a_run_saved_with_the_dense_first_layer_loads(hidden):
    torch.manual_seed(0)
    net = _build_net(12, latent=4, hidden=hidden)
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    old = {("encoder.0" if hidden else "encoder") + ".weight": state["items.weight"].T,
           ("encoder.0" if hidden else "encoder") + ".bias": state["items.bias"]}
    old.update({k.replace("encoder.1.", "encoder.2."): v for k, v in state.items() if k.startswith("encoder.1.")})
    old.update({k: v for k, v in state.items() if k.startswith("decoder.")})
    converted = _from_dense_layout(old, hidden)
    assert sorted(converted) == sorted(state)
    assert all(np.array_equal(converted[k], state[k]) for k in state)
