"""The MOSES metrics (Polykovskiy et al. 2020) against direct RDKit computations made here, on MOSES data.

Each vectorized or screened shortcut of ``genforge.eval.moses_metrics`` is compared with the plain
definition (a double loop of RDKit Tanimoto similarities, every SMARTS tried, Counters built directly), and
the reference statistics reader must refuse a pickle that would run code.
"""
from __future__ import annotations

import math
import os
import random
import warnings
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("rdkit")
pytest.importorskip("scipy")

from rdkit import Chem, DataStructs  # noqa: E402
from rdkit.Chem.Scaffolds import MurckoScaffold  # noqa: E402

from genforge import chem  # noqa: E402
from genforge.data.molecules import moses_dir, moses_file, moses_smiles, quiet_rdkit  # noqa: E402
from genforge.errors import DataError  # noqa: E402
from genforge.eval import moses_metrics as mm  # noqa: E402

try:
    moses_dir()
except DataError as err:  # pragma: no cover - the data ships in the test extra's environment
    pytest.skip(str(err), allow_module_level=True)

quiet_rdkit()


def _test_sample(n: int, seed: int = 0) -> list[str]:
    return random.Random(seed).sample(moses_smiles("test"), n)


def _direct_canonical(s: str) -> str | None:
    m = Chem.MolFromSmiles(s) if s else None
    return Chem.MolToSmiles(m) if m is not None and m.GetNumAtoms() else None


def _corrupt(s: str, i: int) -> str:
    """Deterministic edits that break a SMILES: an unclosed branch, a dropped ring bond digit, a bad element."""
    kind = i % 3
    if kind == 1 and any(c.isdigit() for c in s):
        k = next(j for j, c in enumerate(s) if c.isdigit())
        return s[:k] + s[k + 1:]
    return s + "(" if kind == 0 else "Q" + s


def test_validity_uniqueness_novelty_match_direct_rdkit():
    base = _test_sample(900, seed=1)
    samples = base + base[:50] + [_corrupt(s, i) for i, s in enumerate(base[100:150])]
    random.Random(2).shuffle(samples)
    assert len(samples) == 1000
    train = [_direct_canonical(s) for s in base[::3]] + [_direct_canonical(s) for s in moses_smiles("train")[:200]]
    with pytest.warns(UserWarning) as caught:
        got = mm.evaluate_molecules(samples, train=train, metrics={"valid", "unique@1k", "unique@10k", "novelty"})
    assert sorted(str(w.message).split()[0] for w in caught) == ["unique@10k", "unique@1k"]

    canon = [_direct_canonical(s) for s in samples]
    valid = [c for c in canon if c is not None]
    assert 900 < len(valid) < 1000  # the corruptions really are invalid, mostly
    assert got["n_valid"] == len(valid) and got["n_samples"] == 1000
    assert got["valid"] == len(valid) / 1000
    assert got["unique@1k"] == len(set(valid[:1000])) / len(valid[:1000]) < 1
    assert got["unique@10k"] == got["unique@1k"]
    distinct = set(valid)
    assert got["novelty"] == len(distinct - set(train)) / len(distinct)
    assert 0.5 < got["novelty"] < 0.8  # a third of the molecules are in the train list
    assert any("unique@10k" in n for n in got["notes"])


def _brute_intdiv(smiles: list[str]) -> tuple[float, float]:
    fps = [chem.ecfp4(chem.mol(s), 1024) for s in smiles]
    sims = np.array([DataStructs.BulkTanimotoSimilarity(fp, fps) for fp in fps])
    return 1 - sims.mean(), 1 - np.sqrt((sims ** 2).mean(axis=1)).mean()


def test_internal_diversity_matches_a_double_loop_and_is_zero_for_one_molecule():
    same = mm.evaluate_molecules(["c1ccccc1CCN"] * 20, metrics={"IntDiv", "IntDiv2"})
    assert abs(same["IntDiv"]) < 1e-6 and abs(same["IntDiv2"]) < 1e-6

    mols = _test_sample(45, seed=3)
    samples = mols + mols[:5] + ["C1CC"]  # duplicates count twice, the invalid one not at all
    got = mm.evaluate_molecules(samples, metrics={"IntDiv", "IntDiv2"})
    want = _brute_intdiv([_direct_canonical(s) for s in mols + mols[:5]])
    assert got["IntDiv"] == pytest.approx(want[0], abs=1e-6)
    assert got["IntDiv2"] == pytest.approx(want[1], abs=1e-6)
    assert 0.7 < got["IntDiv"] < 0.95 and got["IntDiv2"] < got["IntDiv"]


def test_nearest_similarity_matches_a_double_loop():
    ref_smiles, gen_smiles = _test_sample(600, seed=4), moses_smiles("train")[:40]
    ref = [chem.ecfp4(chem.mol(s), 1024) for s in ref_smiles]
    want = [max(DataStructs.BulkTanimotoSimilarity(chem.ecfp4(chem.mol(s), 1024), ref)) for s in gen_smiles]
    as_array = lambda smiles: np.stack([chem.ecfp4_numpy(chem.mol(s), 1024) for s in smiles])  # noqa: E731
    got = mm.nearest_similarity(as_array(gen_smiles), mm._FingerprintSet.of(as_array(ref_smiles)))
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert 0.2 < np.mean(got) < 0.9


def test_snn_of_test_molecules_against_the_stored_test_fingerprints_is_one():
    got = mm.evaluate_molecules(_test_sample(200, seed=5), metrics={"SNN/Test"})
    assert got["SNN/Test"] >= 0.99


def test_frag_and_scaf_counts_match_direct_rdkit(monkeypatch):
    mols = _test_sample(150, seed=6)
    samples = mols + mols[:30]
    frags, scafs = Counter(), Counter()
    for s in samples:
        m = Chem.MolFromSmiles(_direct_canonical(s))
        frags.update(Chem.MolToSmiles(Chem.FragmentOnBRICSBonds(m)).split("."))
        scaf = MurckoScaffold.GetScaffoldForMol(m)
        if scaf.GetNumAtoms() and scaf.GetRingInfo().NumRings() >= 2:
            scafs[Chem.MolToSmiles(scaf)] += 1
    own = {"Frag": {"frag": frags}, "Scaf": {"scaf": scafs}}
    monkeypatch.setattr(mm, "reference_stats", lambda split="test": own)
    metrics = {"Frag/Test", "Scaf/Test", "Frag/TestSF", "Scaf/TestSF"}
    got = mm.evaluate_molecules(samples, metrics=metrics)
    assert all(got[k] == pytest.approx(1.0, abs=1e-12) for k in metrics)
    other = mm.evaluate_molecules(_test_sample(150, seed=7), metrics={"Frag/Test", "Scaf/Test"})
    assert other["Frag/Test"] < 0.99 and other["Scaf/Test"] < 0.5


def test_filters_screen_matches_trying_every_smarts():
    import csv

    with open(moses_file("mcf.csv"), newline="") as f:
        smarts = [r["smarts"] for r in csv.DictReader(f)]
    with open(moses_file("wehi_pains.csv"), newline="") as f:
        smarts += [r[0].strip() for r in csv.reader(f)]
    queries = [Chem.MolFromSmarts(s) for s in smarts]
    flagged = ["Oc1ccccc1O", "O=C1C=CC(=O)C=C1", "S=C1SC(=Cc2ccccc2)C(=O)N1", "c1ccc(N=Nc2ccccc2)cc1",
               "CN(C)c1ccc(C=Cc2ccccc2)cc1", "Nc1ccc(N)cc1", "O=C(C=Cc1ccccc1)c1ccccc1", "CC(=O)OO", "CC=NNC(=O)N"]
    smiles = _test_sample(120, seed=8) + flagged + moses_smiles("train")[:30]
    for s in smiles:
        m = chem.mol(s)
        h = Chem.AddHs(m)
        assert chem.passes_filters(m) == (not any(h.HasSubstructMatch(q) for q in queries)), s
    assert sum(not chem.passes_filters(chem.mol(s)) for s in flagged) >= 5
    assert not chem.passes_filters(chem.mol("C[N+](C)(C)C"))  # charged
    assert not chem.passes_filters(chem.mol("CCCCP(C)C"))  # phosphorus
    assert not chem.passes_filters(chem.mol("C1CCCCCCC1"))  # 8-membered ring


class _RunsACommand:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_stats_reader_refuses_a_pickle_that_would_run_code(tmp_path):
    marker = tmp_path / "ran"
    stats = np.empty((), dtype=object)
    stats[()] = {"FCD": {"mu": _RunsACommand(str(marker))}}
    np.savez(tmp_path / "evil.npz", stats=stats)
    with pytest.raises(DataError, match="refused global"):
        mm.read_stats(tmp_path / "evil.npz")
    assert not marker.exists()

    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(DataError, match="not a MOSES statistics file"):
        mm.read_stats(tmp_path / "junk.npz")
    harmless = np.empty((), dtype=object)
    harmless[()] = {"FCD": {"mu": np.zeros(3)}}
    np.savez(tmp_path / "partial.npz", stats=harmless)
    with pytest.raises(DataError, match="FCD"):
        mm.read_stats(tmp_path / "partial.npz")


def test_bad_arguments_and_the_report_table(tmp_path):
    with pytest.raises(DataError, match="unknown MOSES metrics"):
        mm.evaluate_molecules(["CCO"], metrics={"validity"})
    with pytest.raises(DataError, match="no samples"):
        mm.evaluate_molecules([])
    none_valid = mm.evaluate_molecules(["C1CC", "((", ""], metrics={"valid", "unique@1k", "IntDiv"})
    assert none_valid["valid"] == 0 and "IntDiv" not in none_valid and none_valid["notes"]
    table = mm.format_row({"valid": 0.5, "FCD/Test": 1.25, "n_samples": 4, "n_valid": 2, "notes": ["x"]})
    assert "0.5000" in table and "1.2500" in table and "0.9748" in table and "note: x" in table
    assert table.splitlines()[0].split("|")[2].strip() == "CharRNN"


def test_plot_properties_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = mm.plot_properties(_test_sample(50, seed=9) + ["C1CC"], tmp_path / "plots" / "props.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_fcd_is_small_for_test_molecules_and_large_for_alkanes_and_halides():
    pytest.importorskip("fcd_torch")
    test = _test_sample(300, seed=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = mm.evaluate_molecules(test)
    assert set(mm.METRICS) <= set(got)
    assert all(math.isfinite(got[k]) for k in mm.METRICS)
    rng = random.Random(11)
    far = ["C" * rng.randint(2, 14) + rng.choice(["", "Cl", "Br", "F", "C(C)C", "O"]) for _ in range(300)]
    other = mm.evaluate_molecules(far, metrics={"FCD/Test"})
    assert got["FCD/Test"] < 8 and other["FCD/Test"] > 5 * got["FCD/Test"]  # n=300: biased upwards (~4.8)
    assert got["FCD/Test"] < got["FCD/TestSF"]
