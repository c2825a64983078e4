import pytest
import torch
from torch import nn

from fm_course.transfer import (FrozenBackbone, LoRALinear, MaskedStates, StateBatches, TopBlocksClassifier, add_lora,
                                check_block_distance, check_head_from_probe, check_l2sp_sweep, check_lora_trainable,
                                check_merged_weight, merge_lora, pooled_features, resnet18_transfer)


def tiny_bert(seed=0):
    from transformers import BertConfig, BertModel
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=32)
    return BertModel(cfg, add_pooling_layer=False).eval()


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))


# ---------------------------------------------------------------- LoRALinear
@pytest.mark.parametrize('r, err', [(0, ValueError), (5, ValueError), (2.0, TypeError), (None, TypeError), (True, TypeError)])
def test_lora_linear_rank_outside_1_to_min_dk(r, err):
    with pytest.raises(err, match='r must be'): LoRALinear(nn.Linear(6, 4), r=r, alpha=1.0)


@pytest.mark.parametrize('alpha, err', [(0, ValueError), (-1.0, ValueError), ('8', TypeError)])
def test_lora_linear_alpha_must_be_positive(alpha, err):
    with pytest.raises(err, match='alpha'): LoRALinear(nn.Linear(6, 4), r=2, alpha=alpha)


def test_lora_linear_bad_base_and_dropout():
    with pytest.raises(TypeError, match='base'): LoRALinear(nn.Conv1d(2, 2, 1), r=1, alpha=1.0)
    with pytest.raises(ValueError, match='dropout'): LoRALinear(nn.Linear(6, 4), r=1, alpha=1.0, dropout=1.0)


def test_lora_linear_full_rank_and_no_bias():
    "r = min(d, k) is allowed; a base without bias merges to a layer without bias."
    layer = LoRALinear(nn.Linear(6, 4, bias=False), r=4, alpha=2.0)
    with torch.no_grad(): layer.lora_B.normal_()
    x = torch.randn(3, 6)
    merged = layer.merged()
    assert merged.bias is None
    torch.testing.assert_close(merged(x), layer(x))


def test_lora_dropout_only_in_training():
    layer = LoRALinear(nn.Linear(6, 4), r=2, alpha=2.0, dropout=0.5)
    with torch.no_grad(): layer.lora_B.normal_()
    x = torch.randn(64, 6)
    layer.eval()
    torch.testing.assert_close(layer(x), layer.merged()(x))
    layer.train()
    assert not torch.allclose(layer(x), layer.merged()(x))


# ---------------------------------------------------------------- add_lora / merge_lora
def test_add_lora_nothing_matched_names_the_layers():
    with pytest.raises(ValueError, match=r"matched no nn.Linear.*\['0', '2'\]"): add_lora(mlp(), r=1, alpha=1.0, target_modules=('query',))


@pytest.mark.parametrize('targets', ['query', (), [''], (3,), None])
def test_add_lora_target_modules_must_be_a_sequence_of_names(targets):
    with pytest.raises(TypeError, match='target_modules'): add_lora(mlp(), r=1, alpha=1.0, target_modules=targets)


@pytest.mark.parametrize('r, err', [(0, ValueError), (4, ValueError), (1.5, TypeError)])
def test_add_lora_rank_checked_against_every_matched_layer(r, err):
    "Layer '2' is 3 x 4: r = 4 > min(d, k) = 3 is refused, naming the layer; nothing is changed."
    model = mlp()
    with pytest.raises(err, match='r must be'): add_lora(model, r=r, alpha=1.0, target_modules=('0', '2'))
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())


def test_add_lora_bad_model_alpha_train_also():
    with pytest.raises(TypeError, match='model'): add_lora('bert', r=1, alpha=1.0, target_modules=('0',))
    with pytest.raises(ValueError, match='alpha'): add_lora(mlp(), r=1, alpha=0.0, target_modules=('0',))
    with pytest.raises(TypeError, match='train_also'): add_lora(mlp(), r=1, alpha=1.0, target_modules=('0',), train_also='2')


def test_add_lora_twice_does_not_wrap_an_adapter():
    model = add_lora(mlp(), r=1, alpha=1.0, target_modules=('0',))
    with pytest.raises(ValueError, match='matched no nn.Linear'): add_lora(model, r=1, alpha=1.0, target_modules=('0',))
    add_lora(model, r=1, alpha=1.0, target_modules=('2',))                 # another layer is fine
    assert sum(isinstance(m, LoRALinear) for m in model.modules()) == 2


def test_add_lora_suffix_match_and_train_also():
    bert = tiny_bert()
    add_lora(bert, r=2, alpha=4.0, target_modules=('self.query',), train_also=('encoder.layer.1.output',))
    adapted = [n for n, m in bert.named_modules() if isinstance(m, LoRALinear)]
    assert adapted == ['encoder.layer.0.attention.self.query', 'encoder.layer.1.attention.self.query']
    trainable = {n for n, p in bert.named_parameters() if p.requires_grad}
    assert all(n.endswith(('lora_A', 'lora_B')) or n.startswith('encoder.layer.1.output.') for n in trainable)
    assert any(n.startswith('encoder.layer.1.output.') for n in trainable)


def test_merge_lora_bad_inputs():
    with pytest.raises(ValueError, match='no LoRALinear'): merge_lora(mlp())
    with pytest.raises(TypeError, match='model'): merge_lora(None)
    with pytest.raises(ValueError, match='merged()'): merge_lora(LoRALinear(nn.Linear(4, 4), r=1, alpha=1.0))


def test_merge_lora_on_a_bert_keeps_outputs():
    bert = tiny_bert()
    ids = torch.randint(0, 50, (3, 7))
    add_lora(bert, r=2, alpha=4.0, target_modules=('query', 'value'))
    with torch.no_grad():
        for m in bert.modules():
            if isinstance(m, LoRALinear): m.lora_B.normal_()
        before = bert(input_ids=ids).last_hidden_state
        merge_lora(bert)
        after = bert(input_ids=ids).last_hidden_state
    assert not any(isinstance(m, LoRALinear) for m in bert.modules())
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- features, cache, top blocks
@pytest.mark.parametrize('texts', ['one string', [], ['ok', 3], None])
def test_pooled_features_texts_must_be_a_list_of_strings(texts):
    with pytest.raises(TypeError, match='texts'): pooled_features(tiny_bert(), None, texts, batch_size=2, max_length=8)


def test_pooled_features_bad_sizes():
    with pytest.raises(ValueError, match='batch_size'): pooled_features(tiny_bert(), None, ['a'], batch_size=0, max_length=8)
    with pytest.raises(TypeError, match='max_length'): pooled_features(tiny_bert(), None, ['a'], batch_size=1, max_length=8.0)


def test_state_batches_bad_inputs_and_order():
    states = [torch.randn(n, 4) for n in (3, 1, 2)]
    with pytest.raises(ValueError, match='same length'): StateBatches(states, torch.zeros(2, dtype=torch.long), 2, device='cpu')
    with pytest.raises(ValueError, match='empty'): StateBatches([], torch.zeros(0, dtype=torch.long), 2, device='cpu')
    with pytest.raises(ValueError, match='batch_size'): StateBatches(states, torch.zeros(3, dtype=torch.long), 0, device='cpu')
    sb = StateBatches(states, torch.tensor([0, 1, 2]), 2, device='cpu')
    assert sb.index == [[1, 2], [0]]                                         # sorted by length
    xb, yb = sb.batches[0]
    assert isinstance(xb, MaskedStates) and len(xb) == 2 and xb.mask.tolist() == [[True, False], [True, True]]
    assert yb.tolist() == [1, 2]


def test_top_blocks_bad_n_top_and_leaves_encoder_alone():
    bert = tiny_bert()
    for n_top, err in ((0, ValueError), (3, ValueError), (1.0, TypeError)):
        with pytest.raises(err, match='n_top'): TopBlocksClassifier(bert, n_top)
    top = TopBlocksClassifier(bert, 1)
    with torch.no_grad(): top.blocks[0].output.dense.weight.add_(1.0)
    assert not torch.equal(top.blocks[0].output.dense.weight, bert.encoder.layer[1].output.dense.weight)


# ---------------------------------------------------------------- names kept importable
def test_moved_names_are_re_exported():
    "finetune and l2sp_penalty live in fm_course.train, masked_mean in fm_course.models; this module re-exports them."
    import fm_course.models, fm_course.train, fm_course.transfer as transfer
    assert transfer.finetune is fm_course.train.finetune and transfer.l2sp_penalty is fm_course.train.l2sp_penalty
    assert transfer.masked_mean is fm_course.models.masked_mean
    assert {'finetune', 'l2sp_penalty', 'masked_mean'} <= set(transfer.__all__)


# ---------------------------------------------------------------- vision
def test_frozen_backbone_stays_in_eval_mode():
    fb = FrozenBackbone(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), nn.Linear(4, 2))
    fb.train()
    assert fb.training and fb.head.training and not fb.backbone.training
    assert not any(p.requires_grad for p in fb.backbone.parameters())
    with pytest.raises(TypeError, match='head'): FrozenBackbone(nn.Linear(4, 4), 'head')


def test_resnet18_transfer_bad_inputs_and_shapes():
    with pytest.raises(ValueError, match='n_classes'): resnet18_transfer(1)
    with pytest.raises(TypeError, match='freeze_base'): resnet18_transfer(3, freeze_base='yes')
    net = resnet18_transfer(4, weights=None, freeze_base=False).eval()
    with torch.no_grad(): assert net(torch.randn(2, 3, 32, 32)).shape == (2, 4)


# ---------------------------------------------------------------- exercise checkers accept right answers
def test_checkers_accept_the_right_answers():
    assert check_merged_weight(lambda W0, A, B, alpha, r: W0 + alpha / r * B @ A)

    def head_from_probe(clf):
        head = nn.Linear(clf.coef_.shape[1], 2).double()
        w, b = torch.from_numpy(clf.coef_[0]), float(clf.intercept_[0])
        with torch.no_grad():
            head.weight.copy_(torch.stack([-w / 2, w / 2])); head.bias.copy_(torch.tensor([-b / 2, b / 2]))
        return head
    assert check_head_from_probe(head_from_probe)


# ---------------------------------------------------------------- exercise checkers: wrong answers and bad results
def test_check_lora_trainable_names_the_mistake_and_keeps_the_global_rng():
    state = torch.random.get_rng_state()
    def no_head(model): return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not n.startswith('head'))
    with pytest.raises(AssertionError, match='leaves out'): check_lora_trainable(no_head)
    with pytest.raises(AssertionError, match='must return an int'): check_lora_trainable(lambda model: 'many')
    with pytest.raises(AssertionError, match='expected'): check_lora_trainable(lambda model: 1)
    assert check_lora_trainable(lambda model: torch.tensor(sum(p.numel() for p in model.parameters() if p.requires_grad)))   # a 0-d tensor is a count
    assert torch.equal(torch.random.get_rng_state(), state)


def test_check_block_distance_names_the_mistake():
    def squared(model, start): return sum(((p - start[n]) ** 2).sum().item() for n, p in model.named_parameters() if n.startswith('blocks.'))
    with pytest.raises(AssertionError, match='square root'): check_block_distance(squared)
    with pytest.raises(AssertionError, match='distance 0'): check_block_distance(lambda model, start: 1.0)
    with pytest.raises(AssertionError, match='must return a number'): check_block_distance(lambda model, start: 'far')
    def as_tensor(model, start):
        return torch.stack([((p - start[n]) ** 2).sum() for n, p in model.named_parameters() if n.startswith('blocks.')]).sum().sqrt()
    assert check_block_distance(as_tensor)


GOOD_SWEEP = {0: (0.70, 4.0), 0.01: (0.71, 3.9), 0.1: (0.72, 3.1), 1: (0.71, 1.2), 10: (0.69, 0.2)}


@pytest.mark.parametrize('results, msg', [
    ({a: v for a, v in GOOD_SWEEP.items() if a != 1}, r'no entry for alpha = \[1\]'),
    ({**GOOD_SWEEP, 0.1: (72.0, 3.1)}, 'fraction'),                                       # accuracy in percent
    ({**GOOD_SWEEP, 0.1: 0.72}, 'pair'),
    ({**GOOD_SWEEP, 1: (0.7, float('nan'))}, 'finite'),
    ({a: (acc, 0.0) for a, (acc, _) in GOOD_SWEEP.items()}, 'did not move'),               # the encoder measured, not the copy
    ({**GOOD_SWEEP, 1: (0.7, 3.5)}, 'rose from 3.1 at alpha = 0.1 to 3.5 at alpha = 1'),
    ({**GOOD_SWEEP, 10: (0.7, 1.0)}, 'still 1 from'),
])
def test_check_l2sp_sweep_rejects(results, msg):
    with pytest.raises(AssertionError, match=msg): check_l2sp_sweep(results)


def test_check_l2sp_sweep_accepts_noise_and_other_alphas():
    assert check_l2sp_sweep(GOOD_SWEEP)
    assert check_l2sp_sweep({**GOOD_SWEEP, 0.1: (0.72, 4.05)})                         # within rtol = 5% of the distance at 0.01
    assert check_l2sp_sweep({0.5: (0.8, 2.0), 50: (0.7, 0.1)}, alphas=(0.5, 50))
    with pytest.raises(TypeError, match='results'): check_l2sp_sweep([(0, 0.7, 4.0)])


def test_pooled_features_layers():
    from fm_course.mlm import train_wordpiece
    tok = train_wordpiece(['a good film', 'a bad film'] * 20, 100)
    enc = tiny_bert()
    assert len(tok) <= enc.config.vocab_size                                    # every id fits the tiny encoder's table
    last = pooled_features(enc, tok, ['a good film', 'a bad film'], batch_size=2, max_length=8)
    every = pooled_features(enc, tok, ['a good film', 'a bad film'], batch_size=2, max_length=8, layers='all')
    d = enc.config.hidden_size
    assert every.shape == (2, (enc.config.num_hidden_layers + 1) * d) and torch.allclose(every[:, -d:], last, atol=1e-6)   # the last block is the last layer's
    with pytest.raises(ValueError, match='layers'): pooled_features(enc, tok, ['a'], batch_size=2, max_length=8, layers='top')
