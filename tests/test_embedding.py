"""t-SNE of encoded images (Beers 2018 Fig. 5): embedding, table, plots."""

import numpy as np
import pandas as pd
import pytest

from medgan.analysis.embedding import embed_tsne, embedding_table, is_categorical, plot_embedding


def _clusters(n_per=30, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n_per, dim))
    b = rng.normal(size=(n_per, dim)) + 12.0
    return np.concatenate([a, b]), np.array(["L"] * n_per + ["R"] * n_per)


def test_separated_clusters_stay_separated():
    codes, labels = _clusters()
    emb, info = embed_tsne(codes, seed=0, n_iter=250, return_info=True)
    assert emb.shape == (60, 2) and np.isfinite(emb).all()
    assert info["perplexity"] == pytest.approx(59 / 3) and info["perplexity_requested"] == 30.0
    ca, cb = emb[labels == "L"].mean(0), emb[labels == "R"].mean(0)
    # every point is nearer its own cluster's centre than the other's
    own = np.where((labels == "L")[:, None], ca, cb)
    other = np.where((labels == "L")[:, None], cb, ca)
    assert (np.linalg.norm(emb - own, axis=1) < np.linalg.norm(emb - other, axis=1)).all()


def test_deterministic_with_seed():
    codes, _ = _clusters(n_per=10, seed=1)
    a = embed_tsne(codes, seed=3, n_iter=100)
    b = embed_tsne(codes, seed=3, n_iter=100)
    np.testing.assert_array_equal(a, b)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 5"):
        embed_tsne(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        embed_tsne(np.zeros(10))
    with pytest.raises(ValueError, match="NaN"):
        embed_tsne(np.full((10, 2), np.nan))


def test_embedding_table():
    meta = pd.DataFrame({"laterality": list("LRLRL"), "slice": [3, 4, 5, 6, 7]}, index=[9] * 5)
    emb = np.arange(10.0).reshape(5, 2)
    table = embedding_table(emb, meta)
    assert list(table.columns) == ["laterality", "slice", "tsne_1", "tsne_2"]
    assert table["tsne_2"].tolist() == [1.0, 3.0, 5.0, 7.0, 9.0]
    with pytest.raises(ValueError, match="meta rows"):
        embedding_table(emb, meta.iloc[:3])


def test_plots_categorical_and_numeric(tmp_path):
    codes, labels = _clusters(n_per=5)
    emb = codes[:, :2]
    meta = pd.DataFrame({"laterality": labels, "slice": np.arange(10) * 2.0})
    meta.loc[3, "slice"] = np.nan
    assert is_categorical(meta["laterality"]) and not is_categorical(meta["slice"])
    for column in ("laterality", "slice"):
        plot_embedding(emb, meta, column, tmp_path / f"{column}.png")
        assert (tmp_path / f"{column}.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match=r"'age'.*available.*laterality"):
        plot_embedding(emb, meta, "age", tmp_path / "age.png")
    assert not (tmp_path / "age.png").exists()
