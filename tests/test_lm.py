"""Bad inputs and edge cases of fm_course.lm; the proofs (loss, causality, GPT-2, cache, sampling) are the notebook's.
The last test runs `train_lm` under torchrun: two gloo processes with half the batch each take the one-process steps."""
import pytest
import torch

from conftest import assert_two_processes_equal_one, run_per_rank

from fm_course.train import History
from fm_course.lm import (GPT, CharTokenizer, GPTConfig, causal_lm_loss, check_bits_per_char, check_top_p, evaluate_lm, filter_logits,
                          generate, lm_lr, lm_windows, ngram_logprobs, split_ids, to_hf_gpt2, train_lm)


def tiny(**kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**dict(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16), **kw}))


def stream(n=400, V=11, seed=0):
    return torch.randint(V, (n,), generator=torch.Generator().manual_seed(seed))


def test_tokenizer_bad_inputs():
    with pytest.raises(ValueError, match='text'): CharTokenizer('')
    with pytest.raises(TypeError, match='text'): CharTokenizer(['a', 'b'])
    tok = CharTokenizer('abc')
    with pytest.raises(ValueError, match="'z'"): tok.encode('abz')
    with pytest.raises(TypeError, match='s'): tok.encode(3)
    with pytest.raises(ValueError, match='ids'): tok.decode([0, 3])
    with pytest.raises(ValueError, match='ids'): tok.decode(torch.zeros(2, 2, dtype=torch.long))
    assert tok.decode(torch.tensor([2, 0])) == 'ca' and tok.encode('') == []


def test_causal_lm_loss_bad_inputs():
    logits, targets = torch.randn(2, 5, 7), torch.randint(7, (2, 5))
    with pytest.raises(ValueError, match='logits'): causal_lm_loss(logits[0], targets)
    with pytest.raises(TypeError, match='targets'): causal_lm_loss(logits, targets.float())
    with pytest.raises(TypeError, match='logits'): causal_lm_loss(logits.tolist(), targets)
    all_ignored = torch.full((2, 5), -100)
    assert torch.isnan(causal_lm_loss(logits, all_ignored))   # F.cross_entropy's convention: 0 / 0


def test_split_windows_ngram_bad_inputs():
    with pytest.raises(ValueError, match='train_frac'): split_ids(stream(), 1.0)
    with pytest.raises(ValueError, match='ids'): split_ids(stream().view(20, 20))
    with pytest.raises(ValueError, match='block_size'): lm_windows(stream(8), 8)
    with pytest.raises(ValueError, match='block_size'): lm_windows(stream(), 0)
    with pytest.raises(ValueError, match='order'): ngram_logprobs(stream(), 11, order=3)
    with pytest.raises(ValueError, match='alpha'): ngram_logprobs(stream(), 11, order=2, alpha=-1)
    x, y = lm_windows(stream(17), 8)
    assert x.shape == (2, 8) and torch.equal(x.flatten()[1:], y.flatten()[:-1])
    assert torch.isinf(ngram_logprobs(torch.tensor([0, 1, 0, 1]), 3, 2)).any()      # unseen pairs: log 0
    assert torch.isfinite(ngram_logprobs(torch.tensor([0, 1, 0, 1]), 3, 2, alpha=1.0)).all()


def test_config_and_model_bad_inputs():
    with pytest.raises(ValueError, match='n_head'): GPTConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match='dropout'): GPTConfig(dropout=1.0)
    with pytest.raises(TypeError, match='bias'): GPTConfig(bias=1)
    with pytest.raises(TypeError, match='config'): GPT(dict(vocab_size=5))
    m = tiny()
    with pytest.raises(ValueError, match='block_size'): m(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match='idx'): m(torch.zeros(1, 4))
    _, cache = m.step(torch.zeros(1, 6, dtype=torch.long))
    with pytest.raises(ValueError, match='block_size'): m.step(torch.zeros(1, 3, dtype=torch.long), cache)
    with pytest.raises(ValueError, match='bias'): to_hf_gpt2(m)


def test_generate_and_filters_bad_inputs_and_edges():
    m = tiny()
    with pytest.raises(ValueError, match='idx'): generate(m, torch.zeros(1, 0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match='idx'): generate(m, torch.zeros(3, dtype=torch.long), 3)
    with pytest.raises(ValueError, match='temperature'): generate(m, torch.zeros(1, 2, dtype=torch.long), 3, temperature=-1.0)
    with pytest.raises(ValueError, match='top_k'): generate(m, torch.zeros(1, 2, dtype=torch.long), 3, top_k=0)
    with pytest.raises(ValueError, match='top_p'): filter_logits(torch.randn(2, 5), top_p=0.0)
    with pytest.raises(ValueError, match='top_p'): filter_logits(torch.randn(2, 5), top_p=1.5)
    with pytest.raises(TypeError, match='model'): generate(torch.nn.Linear(2, 2), torch.zeros(1, 2, dtype=torch.long), 3)
    idx = torch.zeros(2, 3, dtype=torch.long)
    assert torch.equal(generate(m, idx, 0), idx)
    m.train()
    out = generate(m, idx, 20, top_k=1)                                        # top-k = 1 is greedy
    assert torch.equal(out, generate(m, idx, 20, temperature=0)) and m.training  # the mode is restored
    z = torch.randn(4, 11)
    assert torch.equal(filter_logits(z, top_k=50), z)                            # k ≥ V keeps everything
    assert torch.isfinite(filter_logits(z, top_p=1e-9)).sum(-1).eq(1).all()      # the most likely token always stays


def test_train_lm_bad_inputs_and_history():
    m, ids = tiny(), stream()
    with pytest.raises(ValueError, match='train_ids'): train_lm(m, ids.float(), steps=2, batch_size=2)
    with pytest.raises(ValueError, match='train_ids'): train_lm(m, ids[:9], steps=2, batch_size=2)
    with pytest.raises(ValueError, match='steps'): train_lm(m, ids, steps=0, batch_size=2)
    with pytest.raises(ValueError, match='min_lr'): train_lm(m, ids, steps=2, batch_size=2, lr=1e-3, min_lr=1e-2)
    with pytest.raises(ValueError, match='eval_ids'): train_lm(m, ids, steps=2, batch_size=2, eval_ids=ids.view(20, 20))
    with pytest.raises(TypeError, match='model'): train_lm(torch.nn.Linear(2, 2), ids, steps=2, batch_size=2)
    h = train_lm(m, ids, steps=5, batch_size=4, eval_ids=stream(100, seed=1), eval_every=2, warmup=1, device='cpu')
    assert isinstance(h, History) and h['step'] == [2, 4, 5] and h[-1]['tokens'] == 5 * 4 * 8
    assert abs(h[-1]['val_loss'] - evaluate_lm(m, stream(100, seed=1), 8, max_windows=240)) < 1e-6


def test_checkers_reject_wrong_answers():
    import torch.nn.functional as F
    with pytest.raises(AssertionError): check_bits_per_char(lambda z, y: F.cross_entropy(z.flatten(0, 1), y.flatten()))   # nats, not bits
    with pytest.raises(AssertionError): check_top_p(lambda z, p: filter_logits(z, top_k=2))


SCRIPT = r"""
import json, os, torch
from fm_course.core import dist_info
from fm_course.lm import GPT, GPTConfig, train_lm

rank, world = dist_info()
torch.manual_seed(0)
model = GPT(GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=32))
ids = torch.randint(13, (3000,), generator=torch.Generator().manual_seed(1))
log = train_lm(model, ids, steps=8, batch_size=8 // world, lr=3e-3, warmup=2, eval_ids=ids[:500], eval_every=4, device='cpu')
weights = torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()
with open(os.path.join(os.environ['OUT_DIR'], f'rank{rank}.json'), 'w') as f:
    json.dump({'rank': rank, 'world': world, 'log': log.rows, 'weights': weights}, f)
"""


@pytest.mark.skipif(not torch.distributed.is_available(), reason='this PyTorch build has no torch.distributed')
def test_train_lm_two_processes_equal_one(tmp_path):
    (alone,), pair = run_per_rank(SCRIPT, tmp_path, 1), run_per_rank(SCRIPT, tmp_path, 2)
    assert_two_processes_equal_one(alone, pair, keys=('train_loss', 'val_loss'), time_keys=('seconds', 'train_seconds'))


def test_train_lm_given_starts():
    "`starts=` replaces the random draws: the run equals a hand-written loop on those windows, and bad starts are named."
    ids = stream()
    T, B, steps = 8, 4, 6
    starts = torch.randint(len(ids) - T, (steps, B), generator=torch.Generator().manual_seed(3))   # every valid start, the last included
    torch.manual_seed(0); m = tiny()
    h = train_lm(m, ids, steps=steps, batch_size=B, warmup=1, eval_every=1, grad_clip=None, weight_decay=0.0, device='cpu', starts=starts)
    torch.manual_seed(0); ref = tiny()
    opt = torch.optim.AdamW(ref.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0)
    for s in range(steps):
        for g in opt.param_groups: g['lr'] = lm_lr(s, lr=1e-3, min_lr=1e-4, warmup=1, steps=steps)
        win = ids[starts[s][:, None] + torch.arange(T + 1)].long()
        _, loss = ref(win[:, :-1], win[:, 1:])
        opt.zero_grad(); loss.backward(); opt.step()
        assert abs(loss.item() - h[s]['train_loss']) < 1e-5
    with pytest.raises(ValueError, match='starts'): train_lm(tiny(), ids, steps=steps, batch_size=B, starts=starts[:-1])
    with pytest.raises(ValueError, match='starts'): train_lm(tiny(), ids, steps=steps, batch_size=B, starts=starts.float())
    with pytest.raises(ValueError, match='starts'): train_lm(tiny(), ids, steps=steps, batch_size=B, starts=starts + len(ids))
