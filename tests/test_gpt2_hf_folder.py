"""A Hugging Face GPT-2 folder made here (random weights, a byte-level BPE tokenizer.json trained here)
loads through ``genforge.load`` and behaves like ``transformers``; and parity at GPT-2 small's shape."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import make_corpus_text

import genforge

transformers = pytest.importorskip("transformers")


def _tokenizer_json(folder: Path, vocab_size: int) -> Path:
    """A GPT-2-style tokenizer.json: byte-level pre-tokenizer and decoder, BPE merges learned here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([make_corpus_text(30_000, seed=5)], trainer)
    path = folder / "tokenizer.json"
    tok.save(str(path))
    return path


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    from tokenizers import Tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("gpt2-with-tokenizer")
    tok = Tokenizer.from_file(str(_tokenizer_json(folder, 400)))
    torch.manual_seed(1)
    cfg = GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=64, n_embd=48, n_layer=2, n_head=4,
                     initializer_range=0.2, bos_token_id=None, eos_token_id=None)
    hf = GPT2LMHeadModel(cfg).eval()
    hf.save_pretrained(str(folder))
    return folder, hf, tok


@torch.no_grad()
def test_genforge_load_reads_an_hf_gpt2_folder_with_its_tokenizer(hf_folder) -> None:
    folder, hf, tok = hf_folder
    tm = genforge.load(folder)
    assert tm.meta["source"] == "huggingface-gpt2" and tm.context_length == 64
    text = "ROMEO: the king sees the crown, 42 times!"
    ids = tm.codec.encode(text)
    assert ids == tok.encode(text).ids and tm.codec.decode(ids) == text
    ref = hf(torch.tensor([ids])).logits
    torch.testing.assert_close(tm.model(torch.tensor([ids])), ref, atol=1e-4, rtol=0)
    # greedy text through the pipeline = transformers' greedy generate, decoded by the same tokenizer
    prompt = "JULIET: the"
    p = torch.tensor([tok.encode(prompt).ids])
    out = hf.generate(p, max_new_tokens=12, do_sample=False, pad_token_id=0, attention_mask=torch.ones_like(p))
    assert tm.generate(prompt, max_tokens=12, temperature=0) == tok.decode(out[0, p.shape[1]:].tolist())
    # int8 weights read straight from the folder: close to fp32 (not equal: it is quantized)
    q = genforge.load(folder, quantize="int8")
    lq = q.model(torch.tensor([ids]))
    assert 0 < float((lq - ref).norm() / ref.norm()) < 0.1


def test_an_hf_folder_without_tokenizer_json_is_one_clear_line(hf_folder, tmp_path: Path) -> None:
    import shutil

    from genforge.errors import CheckpointError

    folder = tmp_path / "no-tokenizer"
    shutil.copytree(hf_folder[0], folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer.json") as info:
        genforge.load(folder)
    assert "\n" not in str(info.value)


@pytest.mark.slow
@torch.no_grad()
def test_gpt2_small_shape_parity_one_forward_pass(tmp_path: Path) -> None:
    """GPT-2 small's exact shape (124M parameters, 12 layers, width 768, 50257 tokens, 1024 positions),
    random weights saved by transformers: our loader's logits are within 1e-4 of transformers'."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from genforge.models.gpt2_hf import load_gpt2_hf

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config()).eval()  # the defaults are GPT-2 small
    assert sum(p.numel() for p in hf.parameters()) == 124_439_808
    hf.save_pretrained(str(tmp_path))
    ids = torch.randint(0, 50257, (1, 64), generator=torch.Generator().manual_seed(2))
    ref = hf(ids).logits
    del hf
    ours = load_gpt2_hf(tmp_path)
    assert ours.num_parameters() == 124_439_808
    got = ours(ids)
    assert ref.std() > 0.05
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=0)
