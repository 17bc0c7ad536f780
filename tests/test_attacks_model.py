"""Attacks on real models: a c2f2 trained a few steps on digits (each attack moves its own
metric the attacked way, seeded scores, the robrank compatibility switches, eval.py's --attack /
--swipe / --ers), and every attack on every registered architecture with batch size 1."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

import architectures
import attacks.runner
import datasets
import eval as eval_cli
import main
from attacks import ATTACKS
from attacks.profiles import PROFILES, profile
from attacks.runner import AttackRunner
from metrics.ers import SUBSET_KEY, ers_score, ers_terms
from utilities.checkpoint import load_checkpoint, options_from_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


FAST = "eps=0.30196:alpha=0.011764:pgditer=5"
# attack string -> (reported key, +1 if the attack raises it, -1 if it lowers it)
DIRECTIONS = {
    f"CA:pm=+:W=1:{FAST}": ("CA+:prank", -1),
    f"CA:pm=-:W=1:{FAST}": ("CA-:prank", +1),
    f"QA:pm=+:M=1:{FAST}": ("QA+:prank", -1),
    f"QA:pm=-:M=1:{FAST}": ("QA-:prank", +1),
    f"SPQA:pm=+:M=1:{FAST}": ("SPQA+:prank", -1),
    f"SPQA:pm=-:M=1:{FAST}": ("SPQA-:prank", +1),
    f"TMA:{FAST}": ("Cosine-SIM", +1),
    f"ES:{FAST}": ("embshift", +1),
    f"LTM:{FAST}": ("r@1", -1),
    f"GTM:{FAST}": ("r@1", -1),
    f"GTT:{FAST}": ("retain@4", -1),
    f"FOA:M=2:{FAST}": ("FOA2:Accuracy", +1),
    f"FOA:M=4:{FAST}": ("FOA:tau", +1),
}


# rob28 cut to one FGSM step on the first batch: the ERS metric key of a training run is a
# plumbing test (the score itself: test_ers.py)
ROB28_FGSM = [s.replace("pgditer=32", "pgditer=1") for s in PROFILES["rob28"]]


class FirstBatchRunner(AttackRunner):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs, max_batches=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint path, model, test split, options, final test metrics) of c2f2 trained one
    epoch on digits, with ``ers`` (``ROB28_FGSM``, first batch) among its evaluation metrics."""
    root = tmp_path_factory.mktemp("attack_run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(PROFILES, "rob28", ROB28_FGSM)
        patch.setattr(attacks.runner, "AttackRunner", FirstBatchRunner)
        final = main.train(
            ["--dataset", "digits", "--n_epochs", "1", "--no_train_metrics", "--num_workers",
             "0", "--save_path", str(root), "--savename", "run", "--evaluation_metrics",
             "e_recall@1", "ers"]
        )  # fmt: skip
    checkpoint = root / "digits" / "run" / "checkpoint_last.pth"
    opt = options_from_checkpoint(load_checkpoint(checkpoint, "--test_path"))
    opt.not_pretrained = True
    data = datasets.build(opt, architectures.input_spec(opt.arch))
    model = architectures.build(opt)
    model.load_state_dict(load_checkpoint(checkpoint, "--test_path")["model"])
    return checkpoint, model, data.test, opt, final


def runner_for(trained, **options):
    _, model, test, opt, _ = trained
    settings = dict(device=torch.device("cpu"), batch_size=24, max_batches=1, seed=3,
                    dataset_name=opt.dataset, progress=False)  # fmt: skip
    settings.update(options)
    return AttackRunner(model, test, **settings)


def test_every_registered_attack_is_tested_on_the_trained_model():
    assert {string.split(":")[0] for string in DIRECTIONS} == set(ATTACKS.keys())
    assert {string.split(":")[0] for string in ALL_ATTACKS} == set(ATTACKS.keys())


@pytest.mark.parametrize("string", list(DIRECTIONS))
def test_each_attack_moves_its_metric_the_attacked_way(trained, string):
    key, direction = DIRECTIONS[string]
    benign, adversarial = runner_for(trained).run(string)
    assert set(benign) == set(adversarial)
    assert direction * (adversarial[key] - benign[key]) > 0, (benign, adversarial)
    if string.startswith("SPQA"):  # the 5 semantic anchors stay near the top (ξ term)
        assert adversarial[f"{key[:5]}:GTprank"] < 0.1, adversarial


def test_scores_are_seeded_and_the_model_is_left_unchanged(trained):
    model = trained[1]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    string = f"CA:pm=+:W=2:{FAST}"
    first, again = runner_for(trained).run(string), runner_for(trained).run(string)
    other = runner_for(trained, seed=4).run(string)
    assert first == again and first != other
    assert model.training  # mode restored
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())


def test_ers_is_a_metric_key_of_a_training_run(trained):
    # main.py --evaluation_metrics e_recall@1 ers: computed on the test split, logged and kept
    # in the checkpoint's history (that the value is the seeded rob28 swipe: test_ers.py)
    checkpoint, final = trained[0], trained[4]
    history = load_checkpoint(checkpoint, "--test_path")["history"]["Test"]
    assert history["ers"] == [final["ers"]] and math.isfinite(final["ers"])
    assert 0.0 < final["ers"] < 100.0, final  # one FGSM step on an undefended model
    summary = json.loads((checkpoint.parent / "training_summary.json").read_text())
    assert "ers" in json.dumps(summary)


def test_compat_takes_es_shift_from_the_penultimate_iterate(trained):
    fgsm = "ES:eps=0.3:alpha=0.01:pgditer=1"
    _, correct = runner_for(trained).run(fgsm)
    benign, quirk = runner_for(trained, compat=True).run(fgsm)
    assert correct["embshift"] > 0.0 and quirk["embshift"] == 0.0  # x⁰ is the clean image
    assert quirk["r@1"] < benign["r@1"]  # while ES:R is read at the final iterate


def test_summaries_are_item_means_and_compat_averages_batch_means(trained):
    string = "TMA:eps=0.1:alpha=0.01:pgditer=1"
    whole = runner_for(trained, batch_size=20, max_batches=1).run(string)
    items = runner_for(trained, batch_size=4, max_batches=5).run(string)
    batches = runner_for(trained, batch_size=4, max_batches=5, compat=True).run(string)
    for summary in (items, batches):  # equal batches, targets drawn in the same order
        assert summary[1]["Cosine-SIM"] == pytest.approx(whole[1]["Cosine-SIM"])
    # unequal batches: 3 items then 1
    parts = [{"r@1": torch.tensor([1.0, 1.0, 1.0])}, {"r@1": torch.tensor([4.0])}]
    assert runner_for(trained)._summarise(parts) == {"r@1": 1.75}
    assert runner_for(trained, compat=True)._summarise(parts) == {"r@1": 2.5}


def test_eval_attack_and_swipe_and_ers(trained, tmp_path, capsys, monkeypatch):
    checkpoint = trained[0]
    # rob28 shortened to 2 PGD steps: the test checks the plumbing; the attacks are tested above
    monkeypatch.setitem(PROFILES, "rob28", [s.replace("=32", "=2") for s in PROFILES["rob28"]])
    output = tmp_path / "A.json"
    strings = [f"ES:{FAST}", f"GTT:{FAST}"]
    argv = ["--test_path", str(checkpoint), "--attack_bs", "16", "--attack_batches", "1"]
    assert eval_cli.main([*argv, "--attack", strings[0], "--attack", strings[1],
                          "--output", str(output)]) == 0  # fmt: skip
    result = json.loads(output.read_text())
    assert list(result) == [*strings, SUBSET_KEY]
    assert result[SUBSET_KEY] == {"attack_batches": 1, "attack_bs": 16}
    assert set(result[strings[0]][1]) == {"embshift", "r@1", "r@10", "r@100"}
    assert "[2/2] GTT" in capsys.readouterr().out

    assert eval_cli.main([*argv, "--swipe", "rob28"]) == 0
    swipe_file = checkpoint.parent / "checkpoint_last.pth.rob28.first1.json"  # a partial swipe
    swipe = json.loads(swipe_file.read_text())
    assert list(swipe) == [*profile("rob28"), SUBSET_KEY]
    assert all(len(entry) == 2 for name, entry in swipe.items() if name != SUBSET_KEY)
    printed = capsys.readouterr().out.rstrip().splitlines()
    score = ers_score(ers_terms(swipe))
    assert f"Wrote {swipe_file}" in printed and printed[-1] == f"ERS {score:.1f}"
    assert any(line.startswith("[9/9] GTT") for line in printed)

    assert eval_cli.main(["--ers", str(swipe_file)]) == 0
    lines = capsys.readouterr().out.rstrip().splitlines()
    assert lines[0].startswith("(a partial swipe: the first 1 batches of 16 items")
    assert lines[-1] == f"ERS {score:.1f}" and len(lines) == 13


def test_eval_attack_scores_are_seeded(trained, tmp_path):
    """Same checkpoint and --seed: the same scores; another --seed: other targets."""
    strings = [f"CA:pm=-:W=1:{FAST}", f"QA:pm=+:M=1:{FAST}", f"TMA:{FAST}"]
    argv = ["--test_path", str(trained[0]), "--attack_bs", "16", "--attack_batches", "1"]
    argv += [arg for string in strings for arg in ("--attack", string)]
    runs = []
    for number, seed in enumerate(([], [], ["--seed", "7"])):
        output = tmp_path / f"run{number}.json"
        assert eval_cli.main([*argv, *seed, "--output", str(output)]) == 0
        runs.append(json.loads(output.read_text()))
    assert runs[0] == runs[1]
    assert all(runs[0][s] != runs[2][s] for s in strings[1:])  # CA−: the top-1% may be 1 query


def test_eval_attack_compat_reaches_the_attacks(trained, tmp_path):
    output = tmp_path / "compat.json"
    fgsm = "ES:eps=0.3:alpha=0.01:pgditer=1"
    argv = ["--test_path", str(trained[0]), "--attack_bs", "16", "--attack_batches", "1"]
    assert eval_cli.main([*argv, "--attack", fgsm, "--attack_compat", "robrank",
                          "--output", str(output)]) == 0  # fmt: skip
    assert json.loads(output.read_text())[fgsm][1]["embshift"] == 0.0  # the penultimate iterate


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--attack", "ES"], "--attack/--swipe: attacks need a checkpoint"),
        (["--test_path", "X", "--attack", "CA:pm=+"], "--attack: bad attack string"),
        (["--test_path", "X", "--attack", "ES", "--swipe", "rob28"], "not both"),
        (["--ers", "/nonexistent.json"], "--ers: cannot read swipe JSON"),
    ],
)
def test_eval_attack_errors_are_one_line(argv, fragment, capsys):
    if argv[0] == "--attack":
        argv = ["--embeddings", "E.npz", *argv]
    assert eval_cli.main(argv) == 2
    assert fragment in capsys.readouterr().err


def test_eval_attack_batch_flags_are_range_checked(capsys):
    with pytest.raises(SystemExit) as stop:
        eval_cli.main(["--test_path", "X", "--attack", "ES", "--attack_bs", "0"])
    assert stop.value.code == 2
    assert "argument --attack_bs: expected an integer >= 1, got '0'" in capsys.readouterr().err


def test_ers_of_a_file_missing_a_term_is_an_error(tmp_path, capsys):
    path = tmp_path / "partial.json"
    path.write_text(json.dumps({"ES:eps=0.1": [{}, {"embshift": 0.1, "r@1": 50.0}]}))
    assert eval_cli.main(["--ers", str(path)]) == 2
    assert "has no CA+ result" in capsys.readouterr().err


ALL_ATTACKS = [
    "CA:pm=+:W=1", "CA:pm=-:W=2", "QA:pm=+:M=1", "QA:pm=-:M=2", "SPQA:pm=+:M=1",
    "SPQA:pm=-:M=1", "ES", "TMA", "LTM", "GTM", "GTT", "FOA:M=2", "FOA:M=3",
]  # fmt: skip


class TinySplit(torch.utils.data.Dataset):
    """Random images with labels, items (image, label, index) like datasets.build's splits."""

    def __init__(self, n: int, channels: int, size: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, channels, size, size, generator=generator)
        self.labels = (torch.arange(n) % 3).numpy()
        self.query = self.gallery = None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i]), i


@pytest.mark.parametrize("arch", architectures.ARCHITECTURES.keys())
def test_every_attack_runs_on_every_architecture_with_batch_size_1(arch):
    torch.manual_seed(0)
    opt = argparse.Namespace(arch=arch, embed_dim=8, not_pretrained=True, pretrained_path=None)
    model = architectures.build(opt)
    spec = architectures.input_spec(arch)
    split = TinySplit(6, spec.channels, spec.size if spec.fixed_size else 32)
    runner = AttackRunner(model, split, device=torch.device("cpu"), batch_size=1, max_batches=1,
                          seed=0, dataset_name="cub200", progress=False)  # fmt: skip
    for string in ALL_ATTACKS:
        steps = 2 if string in ("ES", "LTM") else 1
        benign, adversarial = runner.run(f"{string}:eps=0.03:alpha=0.01:pgditer={steps}")
        assert adversarial and set(benign) == set(adversarial), string
        assert all(torch.isfinite(torch.tensor(v)) for v in adversarial.values()), string
