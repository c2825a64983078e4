"""Pretraining under torchrun: two gloo processes with half the batch each take the one-process steps (issue 20).
`fit`'s equality is the train notebook's proof cell; this file covers the MLM pretraining loop, which has its own."""
import pytest
import torch

from conftest import run_per_rank

SCRIPT = r"""
import json, os, torch
from transformers import BertConfig, BertForMaskedLM
import fm_course.core as core
from fm_course.core import dist_info
from fm_course.mlm import pretrain_mlm

rank, world = dist_info()
writes = []
_atomic_path = core.atomic_path
core.atomic_path = lambda dest: (writes.append(str(dest)), _atomic_path(dest))[1]
torch.manual_seed(0)
model = BertForMaskedLM(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, max_position_embeddings=32, hidden_dropout_prob=0.0,
                                   attention_probs_dropout_prob=0.0))
seqs = torch.randint(5, 100, (256, 16), generator=torch.Generator().manual_seed(1))
log = pretrain_mlm(model, seqs, steps=8, batch_size=16 // world, lr=3e-3, special_ids=[0, 1, 2], mask_token_id=3,
                   eval_every=4, eval_sequences=seqs[:32], device='cpu')
weights = torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()
with open(os.path.join(os.environ['OUT_DIR'], f'rank{rank}.json'), 'w') as f:   # one file per process: their stdouts interleave
    json.dump({'rank': rank, 'world': world, 'log': log.rows, 'weights': weights, 'writes': writes}, f)
"""




@pytest.mark.skipif(not torch.distributed.is_available(), reason='this PyTorch build has no torch.distributed')
def test_pretrain_mlm_two_processes_equal_one(tmp_path):
    (alone,), pair = run_per_rank(SCRIPT, tmp_path, 1), run_per_rank(SCRIPT, tmp_path, 2)
    assert [r['rank'] for r in pair] == [0, 1] and {r['world'] for r in pair} == {2}
    w1, w2a, w2b = (torch.tensor(r['weights']) for r in (alone, *pair))
    assert torch.equal(w2a, w2b)                                       # DDP keeps the copies identical
    torch.testing.assert_close(w2a, w1, rtol=0, atol=1e-4)             # ... and equal to the one-process model
    for r1, r2 in zip(alone['log'], pair[0]['log'], strict=True):
        assert r1['step'] == r2['step'] and r1['tokens'] == r2['tokens']   # tokens count every process's rows
        for k in ('train_loss', 'train_acc', 'eval_loss', 'eval_acc'):
            assert abs(r1[k] - r2[k]) < 1e-4, (k, r1[k], r2[k])
    drop_time = lambda log: [{k: v for k, v in r.items() if k != 'seconds'} for r in log]
    assert drop_time(pair[0]['log']) == drop_time(pair[1]['log'])      # reduced logs: every process reports the same
    assert all(r['writes'] == [] for r in pair)                        # pretraining writes no files on any rank
