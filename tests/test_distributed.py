"""Pretraining under torchrun: two gloo processes with half the batch each take the one-process steps (issue 20).
`fit`'s equality is the train notebook's proof cell; this file covers the MLM pretraining loop, which has its own."""
import pytest
import torch

from conftest import assert_two_processes_equal_one, run_per_rank

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
    assert_two_processes_equal_one(alone, pair, keys=('train_loss', 'train_acc', 'eval_loss', 'eval_acc'))
    assert all(r['writes'] == [] for r in pair)                        # pretraining writes no files on any rank
