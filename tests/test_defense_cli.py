"""robrank's model-name grammar (``--defense ghmetsmi``) and ``-C`` command strings: what they
translate to, and one-line errors for bad ones."""

from __future__ import annotations

import subprocess
import sys

import pytest

import main
import parameters
from defenses.grammar import hm_settings
from tests.conftest import ROOT
from utilities.errors import ConfigError
from utilities.robrank_command import translate


def parse(*flags: str):
    return parameters.parse_args(list(flags))[0]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ghmetsmi", ("linear", False, "et", "softhard", "semihard", True)),
        ("ghmetsm", ("linear", False, "et", "softhard", "semihard", False)),
        ("hmetrm", ("off", False, "et", "anchor_random", "semihard", False)),
        ("hmklsh", ("off", False, "kl", "softhard", "hard", False)),
        ("grhl2dr", ("linear", True, "l2", "distance", "anchor_random", False)),
    ],
)
def test_grammar_names_set_the_hm_flags(name, expected):
    opt = parse("--defense", name, "--loss", "triplet")
    gradual, fixed, objective, source, destination, ics = expected
    assert opt.defense == "hm"
    assert opt.defense_hm_gradual == gradual and opt.defense_hm_fix_anchor is fixed
    assert opt.defense_hm_objective == objective
    assert (opt.defense_hm_source, opt.defense_hm_destination) == (source, destination)
    assert opt.defense_ics is ics


@pytest.mark.parametrize("name", ["hm", "ghm", "ghmetsx", "ghmetsmii", "xhmetsm", "hmetsm_i"])
def test_non_grammar_names_are_not_hm_settings(name):
    assert hm_settings(name) is None


def test_unknown_defense_names_the_closest():
    with pytest.raises(ConfigError, match=r"--defense: unknown defense 'acts'.*'act'"):
        parse("--defense", "acts", "--loss", "triplet")


def test_grammar_conflicting_with_an_explicit_flag_fails():
    with pytest.raises(ConfigError, match="--defense_ics: .*--defense ghmetsm means False"):
        parse("--defense", "ghmetsm", "--defense_ics", "--loss", "triplet")
    # An explicit flag that agrees with the name is fine.
    assert parse("--defense", "ghmetsmi", "--defense_ics", "--loss", "triplet").defense_ics


def test_robrank_act_on_mnist():
    opt = parse("-C", "mnist:rc2f2p:ptripletN")
    assert (opt.dataset, opt.arch, opt.embed_dim) == ("mnist", "c2f2_normalize", 512)
    assert (opt.loss, opt.loss_triplet_distance, opt.loss_triplet_margin) == (
        "triplet", "euclidean", 0.2)  # fmt: skip
    assert opt.batch_mining == "anchor_random" and opt.defense == "act"
    assert (opt.bs, opt.samples_per_class, opt.lr, opt.decay) == (256, 2, 1e-3, 1e-7)
    assert (opt.n_epochs, opt.optim, opt.scheduler) == (16, "adam", "none")
    assert opt.evaluation_metrics == ["e_recall@1", "e_recall@2", "mAP_R", "nmi"]
    assert opt.defense_eps is None and opt.defense_pgditer == 32  # 28 px: ε 77/255, α 3/255
    assert opt.robrank_command == "mnist:rc2f2p:ptripletN"


def test_robrank_hm_on_cub_freezes_batch_norm():
    opt = parse("-C", "cub:rres18ghmetsmi:ptripletN")
    assert (opt.dataset, opt.arch) == ("cub200", "resnet18_frozen_normalize")
    assert (opt.bs, opt.lr, opt.decay, opt.n_epochs) == (112, 1e-5, 4e-4, 150)
    assert opt.defense == "hm" and opt.defense_hm_gradual == "linear" and opt.defense_ics
    assert (opt.defense_hm_source, opt.defense_hm_destination) == ("softhard", "semihard")
    assert opt.augmentation == "red"


def test_robrank_legacy_est_trains_batch_norm():
    assert parse("-C", "cub:rres18d:ptripletN").arch == "resnet18_normalize"
    assert parse("-C", "cub:rres18df:ptripletN").arch == "resnet18_frozen_normalize"
    fgsm = parse("-C", "fashion:rc2f2df:ptripletN")
    assert (fgsm.dataset, fgsm.defense, fgsm.defense_pgditer) == ("fashion", "est", 1)


def test_robrank_euclidean_semihard_act():
    opt = parse("-C", "cars:rres50p:pmtripletE")
    assert opt.arch == "resnet50_frozen" and opt.defense_metric == "E"
    assert opt.loss_triplet_margin == 1.0 and opt.batch_mining == "semihard"
    assert opt.miner_semihard_margin == 1.0
    # robrank's ACT passes margin 1.0 to the semihard miner even for metric N (spec §9.2.4).
    assert parse("-C", "mnist:rc2f2p:pmtripletN").miner_semihard_margin == 1.0
    assert parse("-C", "mnist:rc2f2:pmtripletN").miner_semihard_margin == 0.2


def test_robrank_other_losses():
    margin = parse("-C", "sop:rres18:pmarginN")
    assert (margin.dataset, margin.loss, margin.loss_margin_beta) == (
        "online_products", "margin", 0.6)  # fmt: skip
    quad = parse("-C", "mnist:rc2f2:pdquadN")
    assert quad.loss == "quadruplet" and quad.loss_quadruplet_margin_alpha_2 == 0.1
    assert quad.batch_mining == "distance" and quad.miner_distance_no_upper_cutoff
    rho = parse("-C", "mnist:rc2f2:pDtripletN")
    assert rho.batch_mining == "rho_distance" and rho.miner_rho_distance_cp == 0.15
    cosine = parse("-C", "mnist:rc2f2:ptripletC")
    assert cosine.loss_triplet_distance == "cosine" and cosine.defense_metric == "C"


def test_flags_after_the_command_string_win():
    opt = parse("-C", "mnist:rc2f2p:ptripletN", "--n_epochs", "2", "--dataset", "digits")
    assert (opt.n_epochs, opt.dataset, opt.defense) == (2, "digits", "act")


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("mnist:rc2f2p", "expected DATASET:MODEL:LOSS"),
        ("imagenet:rc2f2:ptripletN", "unknown robrank dataset 'imagenet'"),
        ("mnist:rlenet:ptripletN", "backbone 'rlenet' has no counterpart"),
        ("mnist:vgg:ptripletN", "unknown robrank model 'vgg'"),
        ("mnist:rc2f2x:ptripletN", "unknown defense suffix 'x'"),
        ("mnist:rc2f2:pmarginC", "cosine metric C is available for the triplet loss only"),
        ("mnist:rc2f2:ctripletN", "unsupported robrank loss 'ctripletN'"),
    ],
)
def test_bad_command_strings(command, message):
    with pytest.raises(ConfigError, match=message):
        translate(command)


def run_main(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "main.py", *flags], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-C", "mnist:rc2f2q:ptripletN"], "-C: unknown defense suffix"),
        (["--defense", "act", "--loss", "proxynca"], "--defense act: cannot serve --loss proxynca"),
        (["--defense", "hm", "--loss", "triplet", "--defense_hm_source", "npair"],
         "--defense_hm_source: 'npair' is not a triplet miner"),
        (["--defense", "hmetsmi", "--defense_hm_fix_anchor", "--loss", "triplet"],
         "--defense_hm_fix_anchor: got True, but --defense hmetsmi means False"),
        (["--defense", "grhetsmi", "--loss", "triplet"], "--defense_ics: ICS compares"),
        (["--defense", "hm", "--loss", "triplet", "--defense_hm_destination", "nan"],
         "--defense_hm_destination: got nan"),
    ],
)  # fmt: skip
def test_bad_defense_input_is_one_line_exit_2_and_leaves_no_run_folder(
    tmp_path, capsys, flags, message
):
    assert main.main([*flags, "--save_path", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not any(tmp_path.iterdir()), "a failed start must not leave a run folder"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--defense_eps", "2"], "argument --defense_eps: expected a finite number > 0 and <= 1"),
        (["--defense_pgditer", "0"], "argument --defense_pgditer: expected an integer >= 1"),
        (["--defense_hm_gamma", "-1"], "argument --defense_hm_gamma: expected a finite number > 0"),
        (
            ["--defense_ics_lambda", "nan"],
            "argument --defense_ics_lambda: expected a finite number",
        ),
    ],
)
def test_out_of_range_defense_flags_are_argparse_errors(capsys, flags, message):
    with pytest.raises(SystemExit) as stop:
        main.main(["--defense", "est", *flags])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_main_prints_the_translation_of_a_command_string(tmp_path):
    """As a subprocess: the translation on stdout, then one error line, no traceback."""
    result = run_main("-C", "mnist:rc2f2p:ptripletN", "--source_path", str(tmp_path / "none"),
                      "--save_path", str(tmp_path))  # fmt: skip
    first = result.stdout.splitlines()[0]
    assert first.startswith("-C mnist:rc2f2p:ptripletN -> --dataset mnist --arch c2f2_normalize")
    assert "--defense act" in first
    assert result.returncode == 2  # no MNIST files here: the dataset error, in one line
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_the_translation_line_names_the_flags_given_instead(capsys):
    given = ["--dataset", "digits", "--bs", "112", "--evaluation_metrics", "e_recall@1"]
    opt, _ = parameters.parse_args(["-C", "mnist:rc2f2p:ptripletN", *given])
    line = capsys.readouterr().out.strip().splitlines()[0]
    assert line.startswith("-C mnist:rc2f2p:ptripletN -> --dataset mnist")
    assert line.endswith("(given instead: --bs 112, --dataset digits, "
                         "--evaluation_metrics e_recall@1)")  # fmt: skip
    assert (opt.bs, opt.dataset, opt.n_epochs) == (112, "digits", 16)
