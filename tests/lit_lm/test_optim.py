import pytest
import torch

from lit_lm.config import BertConfig
from lit_lm.model import BertForPreTraining
from lit_lm.optim import lr_factor, param_groups, time_budget_factor, warmup_steps


def test_no_decay_on_bias_and_layernorm():
    m = BertForPreTraining(BertConfig.from_name("tiny", vocab_size=50))
    decay, no_decay = param_groups(m, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in m.named_parameters()}
    assert all(names[id(p)].endswith("weight") and ".ln" not in names[id(p)] for p in decay["params"])
    assert all(names[id(p)].endswith("bias") or ".ln" in names[id(p)] for p in no_decay["params"])
    # every parameter exactly once (the tied decoder weight too)
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(m.parameters()))


def test_schedule_linear_warmup_then_decay():
    assert lr_factor(0, 10, 100) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert lr_factor(10, 10, 100) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100) == pytest.approx(0.5)
    assert lr_factor(100, 10, 100) == pytest.approx(0.0)
    assert lr_factor(55, 10, 100, "cosine") == pytest.approx(0.5)
    assert lr_factor(77, 10, 100, "constant") == 1.0


def test_time_budget_reaches_zero_when_the_time_does():
    # warmup as a fraction of the time, then linear decay over the whole budget; the smaller of the two counts
    assert time_budget_factor(0, 0.0, 0.1) == 0.0
    assert time_budget_factor(3, 0.05, 0.1) == pytest.approx(0.5)
    assert time_budget_factor(999, 0.5, 0.1) == pytest.approx(0.5)
    assert time_budget_factor(10**6, 1.0, 0.1) == 0.0
    assert time_budget_factor(10**6, 1.3, 0.1) == 0.0  # past the budget (the step that hits the limit)
    # warmup in steps
    assert time_budget_factor(0, 0.0, 10) == pytest.approx(0.1)
    assert time_budget_factor(4, 0.9, 10) == pytest.approx(0.1)  # decay wins once it is below the ramp
    assert time_budget_factor(500, 0.5, 10, "cosine") == pytest.approx(0.5)
    assert time_budget_factor(500, 0.5, 10, "constant") == 1.0


def test_warmup_steps_from_steps_or_a_fraction():
    assert warmup_steps(500, 10_000) == 500
    assert warmup_steps(0.1, 10_000) == 1_000  # a fraction of all optimizer steps (BERT's warmup_proportion)
    assert warmup_steps(0.1, 25) == 2  # rounded down ...
    assert warmup_steps(0.01, 25) == 1  # ... but a positive warmup is at least one step
    assert warmup_steps(0, 25) == 0 and warmup_steps(0.0, 25) == 0  # none asked, none given


class _Trainer:  # what configure_optimizers reads of the trainer: the schedule's length
    estimated_stepping_batches = 25


@pytest.mark.parametrize("warmup", [0, 3, 0.01, 0.1])
def test_both_modules_warm_up_by_the_one_rule(warmup, tmp_path):
    """Pretraining and fine-tuning schedule the same warmup for the same setting (they once rounded differently)."""
    from data_modules.tokenizer import train_tokenizer
    from lit_lm.classification import SequenceClassification
    from lit_lm.pretraining import MLMPretraining

    tok = tmp_path / "tokenizer.json"
    train_tokenizer(["a small corpus", "of a few words"] * 4, 64, show_progress=False).save(str(tok))
    modules = [MLMPretraining(config="tiny", vocab_size=64, warmup_steps=warmup),
               SequenceClassification(tokenizer=str(tok), config="tiny", warmup_steps=warmup)]
    expected = [lr_factor(step, warmup_steps(warmup, 25), 25) for step in range(25)]
    for module in modules:
        module._trainer = _Trainer()
        scheduler = module.configure_optimizers()["lr_scheduler"]["scheduler"]
        factor = scheduler.lr_lambdas[0]  # every parameter group follows the same lambda
        assert [factor(step) for step in range(25)] == pytest.approx(expected), type(module)
