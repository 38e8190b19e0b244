"""Molecules: the SMILES codec, the molecule data layer, the many-sample loop and `genforge generate` for SMILES."""
from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from rdkit import Chem

from genforge.codecs.smiles import SmilesCodec, tokenize
from genforge.data.molecules import (
    moses_smiles,
    prepare_smiles_corpus,
    randomized,
    read_molecules,
    read_smiles_file,
)
from genforge.errors import CheckpointError, DataError


def test_codec_round_trips_the_whole_moses_test_set_exactly():
    smiles = moses_smiles("test")
    assert len(smiles) == 176_074
    text = "\n".join(smiles) + "\n"
    codec = SmilesCodec.from_text(text)
    ids = codec.encode(text)
    assert ids.count(codec.bos_id) == ids.count(codec.eos_id) == len(smiles)
    assert codec.decode(ids) == text


@pytest.mark.parametrize("smiles, tokens", [
    ("BrCCCl", ["Br", "C", "C", "Cl"]),
    ("C[C@@H](N)C(=O)O", ["C", "[C@@H]", "(", "N", ")", "C", "(", "=", "O", ")", "O"]),
    ("c1ccc2c(c1)%10CC%10", ["c", "1", "c", "c", "c", "2", "c", "(", "c", "1", ")", "%10", "C", "C", "%10"]),
    ("F/C=C\\F", ["F", "/", "C", "=", "C", "\\", "F"]),
    ("[nH+]1cc[o-]1.[Na+]", ["[nH+]", "1", "c", "c", "[o-]", "1", ".", "[Na+]"]),
])
def test_tokenizer_keeps_multi_character_tokens_whole(smiles, tokens):
    assert tokenize(smiles) == tokens


def test_tokenizer_names_what_is_not_smiles():
    with pytest.raises(DataError, match=r"'x' at position 2"):
        tokenize("CCxC")


def test_encode_marks_molecule_starts_and_ends():
    codec = SmilesCodec.from_text("CCO\nc1ccccc1\n")
    b, e = codec.bos_id, codec.eos_id
    assert codec.encode("") == [b]  # from scratch
    frag = codec.encode("c1cc")
    assert frag[0] == b and e not in frag and codec.decode(frag) == "c1cc"  # a prompt stays open
    two = codec.encode("CCO\n\nCC\n")
    assert two.count(b) == 2 and two.count(e) == 2 and codec.decode(two) == "CCO\nCC\n"
    with pytest.raises(DataError, match="'Br'"):
        codec.encode("CCBr")  # not in this vocabulary: named
    assert SmilesCodec.from_dict(codec.to_dict()) == codec
    with pytest.raises(CheckpointError):
        SmilesCodec.from_dict({"kind": "smiles", "tokens": ["C", "<pad>"]})


def test_smiles_files_and_columns(tmp_path):
    smi = tmp_path / "a.smi"
    smi.write_text("SMILES\nCCO ethanol\n\nc1ccccc1 benzene\n")
    assert read_smiles_file(smi) == ["CCO", "c1ccccc1"]
    csv = tmp_path / "a.csv"
    csv.write_text("name,Smiles,score\nx,CCN,1\ny,OCC,2\n")
    assert read_smiles_file(csv) == ["CCN", "OCC"]
    with pytest.raises(DataError, match=r"no column 'mol'.*name, Smiles, score"):
        read_smiles_file(csv, column="mol")
    empty = tmp_path / "e.smi"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="has no SMILES"):
        read_smiles_file(empty)


def test_invalid_smiles_are_counted_and_skipped_and_the_rest_canonical(tmp_path):
    src = tmp_path / "m.smi"
    src.write_text("OCC\nC1CC\nc1ccccc1O\nC(C\n")
    mols = read_molecules(str(src))
    assert mols.smiles == [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in ("OCC", "c1ccccc1O")]
    assert mols.invalid == ["C1CC", "C(C"] and mols.read == 4
    path, report = prepare_smiles_corpus(str(src), tmp_path / "cache", augment=2, seed=3)
    lines = path.read_text().splitlines()
    assert len(lines) == 6 and "2 invalid skipped" in report
    canon = {Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in lines}
    assert canon == set(mols.smiles)  # randomized copies are the same molecules
    again, _ = prepare_smiles_corpus(str(src), tmp_path / "cache", augment=2, seed=3)
    assert again == path  # cached


def test_randomized_smiles_differ_but_parse_to_the_same_molecule():
    s = "CC(=O)Nc1ccc(O)cc1"
    out = randomized(s, 10, random.Random(0))
    assert len(set(out)) > 1
    assert {Chem.MolToSmiles(Chem.MolFromSmiles(r)) for r in out} == {Chem.MolToSmiles(Chem.MolFromSmiles(s))}


@pytest.fixture(scope="module")
def mol_model(tmp_path_factory):
    """A tiny SMILES LSTM trained for a few seconds on 2,000 MOSES test molecules."""
    import os

    from genforge.train.fit import fit

    tmp = tmp_path_factory.mktemp("mol")
    src = tmp / "train.smi"
    src.write_text("\n".join(moses_smiles("test")[:2000]) + "\n")
    old = os.environ.get("GENFORGE_HOME")
    os.environ["GENFORGE_HOME"] = str(tmp / "home")
    try:
        cfg = tiny_config(tmp, src, model={"kind": "rnn", "hidden": 64, "block_size": 64}, codec={"kind": "smiles"},
                          max_steps=60, batch_size=16, lr=3e-3)
        fit(cfg)
    finally:
        if old is None:
            os.environ.pop("GENFORGE_HOME")
        else:
            os.environ["GENFORGE_HOME"] = old
    return tmp / "run"


def test_sampling_ends_at_eos_and_reproduces_by_seed(mol_model):
    import genforge
    from genforge.sampling.tokens import sample_sequences

    mm = genforge.load(mol_model)
    assert mm.modality == "molecule" and mm.meta["pipeline"] == "molecule"
    params = mm.params(temperature=1.0, max_tokens=40, seed=5)
    seqs = sample_sequences(mm.model, [mm.codec.bos_id], 37, params, mm.codec.eos_id, batch_size=16)
    assert len(seqs) == 37
    for s in seqs:
        assert mm.codec.eos_id not in s[:-1]  # nothing after the end
        assert s[-1] == mm.codec.eos_id or len(s) == 40
    assert sample_sequences(mm.model, [mm.codec.bos_id], 37, params, mm.codec.eos_id, batch_size=16) == seqs
    frag = mm.sample(5, prompt="c1ccccc1", seed=1)
    assert all(s.startswith("c1ccccc1") and "\n" not in s for s in frag)


def test_sampled_tokens_follow_the_models_distribution(mol_model):
    """The first token after <bos>, sampled many times, matches softmax(logits) of the model."""
    import genforge

    mm = genforge.load(mol_model)
    with torch.no_grad():
        probs = torch.softmax(mm.model(torch.tensor([[mm.codec.bos_id]]))[0, -1].float(), -1)
    from genforge.sampling.tokens import sample_sequences

    seqs = sample_sequences(mm.model, [mm.codec.bos_id], 4000, mm.params(temperature=1.0, max_tokens=1, seed=0),
                            mm.codec.eos_id, batch_size=1000)
    freq = torch.bincount(torch.tensor([s[0] for s in seqs]), minlength=len(probs)).float() / 4000
    assert (freq - probs).abs().max() < 0.03


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genforge", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_generate_writes_smiles_csv_sdf_and_a_drawing(mol_model, tmp_path):
    r = _cli("generate", "--model", str(mol_model), "--n", "40", "--seed", "0", "--out", "m.smi", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "m.smi").read_text().splitlines()
    assert len(lines) == 40 and "valid" in r.stdout
    r = _cli("generate", "--model", str(mol_model), "--n", "40", "--seed", "0", "--out", "m.csv", cwd=tmp_path)
    import csv

    rows = list(csv.DictReader((tmp_path / "m.csv").open()))
    assert [row["smiles"] for row in rows] == lines  # same seed, same molecules
    valid = [row for row in rows if row["valid"] == "1"]
    def parses(s: str) -> bool:  # an empty string parses to an empty molecule: not a valid sample
        m = Chem.MolFromSmiles(s) if s else None
        return m is not None and m.GetNumAtoms() > 0

    assert all(parses(row["smiles"]) == (row["valid"] == "1") for row in rows)
    r = _cli("generate", "--model", str(mol_model), "--n", "40", "--seed", "0", "--out", "m.sdf", "--grid", "g.png",
             cwd=tmp_path)
    if not valid:
        assert r.returncode == 2 and "nothing to draw" in r.stderr
        return
    assert r.returncode == 0, r.stderr
    back = [m for m in Chem.SDMolSupplier(str(tmp_path / "m.sdf")) if m is not None]
    assert len(back) == len(valid)
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_generate_refuses_bad_fragments_and_image_flags(mol_model, tmp_path):
    r = _cli("generate", "--model", str(mol_model), "--prompt", "CCXyz", "--out", "m.smi", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "'X'" in r.stderr
    assert not (tmp_path / "m.smi").exists()
    r = _cli("generate", "--model", str(mol_model), "--class", "3", cwd=tmp_path)
    assert r.returncode == 2 and "--class does not apply to molecule models" in r.stderr
    r = _cli("generate", "--model", str(mol_model), "--out", "m.txt", cwd=tmp_path)
    assert r.returncode == 2 and ".smi, .csv, .sdf" in r.stderr


def test_a_transformer_learns_smiles_too(tmp_path, home):
    """The same recipe with the core's Transformer: trains on SMILES and its samples end at <eos>."""
    import genforge
    from genforge.train.fit import fit

    src = tmp_path / "train.smi"
    src.write_text("\n".join(moses_smiles("test")[:500]) + "\n")
    cfg = tiny_config(tmp_path, src, codec={"kind": "smiles"}, max_steps=30, block_size=64)
    fit(cfg)
    mm = genforge.load(tmp_path / "run")
    assert mm.model.kind == "transformer" and mm.modality == "molecule"
    out = mm.sample(8, seed=0, max_tokens=30)
    assert len(out) == 8 and all("\n" not in s for s in out)
