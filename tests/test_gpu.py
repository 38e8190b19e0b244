"""CUDA checks (marked gpu; CI has no GPU, so they run on a machine with one: pytest -m gpu)."""
import copy

import pytest
import torch

from genforge.models.transformer import GPT, GPTConfig
from genforge.sampling import stream_tokens
from genforge.types import SamplingParams

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(autouse=True)
def exact_matmuls():
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


def tiny_gpt(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=97, block_size=64, n_layer=2, n_head=4, n_embd=64)).eval()


def test_cuda_forward_and_kv_cache_match_cpu():
    cpu = tiny_gpt()
    gpu = copy.deepcopy(cpu).cuda()
    x = torch.randint(0, 97, (2, 40))
    with torch.no_grad():
        ref = cpu(x)
        full = gpu(x.cuda()).cpu()
        state = gpu.init_state(2, 64)
        steps = []
        for t in range(40):
            logits, state = gpu.step(x[:, t:t + 1].cuda(), state)
            steps.append(logits.cpu())
    assert torch.allclose(full, ref, atol=1e-4)
    assert torch.allclose(torch.cat(steps, 1), ref, atol=1e-4)


def test_cuda_greedy_tokens_match_cpu_and_seeded_sampling_repeats():
    cpu = tiny_gpt()
    gpu = copy.deepcopy(cpu).cuda()
    prompt = [1, 2, 3, 4]
    greedy = SamplingParams(max_tokens=30, temperature=0.0)
    a = [t for t, _ in stream_tokens(cpu, prompt, greedy)]
    b = [t for t, _ in stream_tokens(gpu, prompt, greedy)]
    assert a == b
    sampled = SamplingParams(max_tokens=30, temperature=1.0, top_p=0.9, seed=7)
    c = [t for t, _ in stream_tokens(gpu, prompt, sampled)]
    d = [t for t, _ in stream_tokens(gpu, prompt, sampled)]
    assert c == d


def test_bf16_autocast_training_reduces_loss():
    import torch.nn.functional as F

    model = tiny_gpt().cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, fused=True)
    torch.manual_seed(1)
    x = torch.randint(0, 97, (16, 33), device="cuda")  # a fixed batch: loss must fall when memorising it
    losses = []
    for _ in range(30):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, 97), x[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.7 * losses[0]


def test_torch_compile_matches_eager():
    model = tiny_gpt().cuda()
    compiled = torch.compile(model)
    x = torch.randint(0, 97, (4, 64), device="cuda")
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-4)


def test_fit_on_cuda_with_bf16(tmp_path, monkeypatch):
    from genforge.config import RunConfig
    from genforge.train.fit import fit

    monkeypatch.setenv("GENFORGE_HOME", str(tmp_path / "home"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(2000)))
    cfg = RunConfig.from_dict({
        "model": {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64},
        "data": {"corpus": str(corpus)},
        "train": {"out_dir": str(tmp_path / "run"), "max_steps": 60, "batch_size": 16, "eval_interval": 30,
                  "eval_steps": 2, "precision": "bf16", "device": "cuda", "progress": False, "warmup_steps": 5},
    })
    result = fit(cfg)
    losses = [r["loss"] for r in result.history if "loss" in r]
    assert result.checkpoint is not None and losses[-1] < losses[0]
