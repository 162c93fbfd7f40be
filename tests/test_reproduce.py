"""`audit reproduce`: a published claim trained as published, offline on CIFAR-format files the
test writes, through the local and the Ray backends, with and without the equal-budget arm; the
report's two arms, teacher check and departures hold the run's own numbers; `--dry-run` plans
every mapped claim without data; the study-file form; bad input is one line, exit 2, no folder."""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from test_data import write_cifar10
from test_teacher_weights import _released_resnet8

from audit.cli import main
from audit.errors import AuditError
from audit.judge.published import Selection, judge_published, statistic_of_rule

CLAIM = "C382"  # the seed survey's kd, survey_resnet8 -> survey_resnet8 on CIFAR-10 (best test epoch of one run)


@pytest.fixture
def cifar10(tmp_path):
    # 200 training images: the equal-budget arm keeps 160 after its validation split, above the preset's batch of 128
    write_cifar10(tmp_path / "data", per_class_per_batch=4, test_per_class=3)  # 200 training, 30 test images
    return tmp_path / "data"


def _reproduce(tmp_path, data, *extra: str, name: str = "r", cache=None) -> int:
    return main(["reproduce", CLAIM, "--data-dir", str(data), "--epochs", "1", "--seeds", "2", "--out", str(tmp_path / "reports"),
                 "--name", name, "--cache-dir", str(cache or tmp_path / "cache"), *extra])


def _row(md: str, first: str) -> list[str]:
    """The cells of the report.md table row that starts with ``first``."""
    rows = [line for line in md.splitlines() if line.startswith(f"| {first} |")]
    assert len(rows) == 1, rows
    return [c.strip() for c in rows[0].strip("|").split("|")]


def _check_report(folder: Path, *, with_audit: bool) -> None:
    md = (folder / "report.md").read_text()
    study = tomllib.loads((folder / "study.toml").read_text())
    assert study["kind"] == "reproduce" and study["claims"] == [CLAIM] and study["with_audit"] is with_audit
    (p,) = study["protocols"]
    assert p["recipe"]["epochs"] == 1 and p["seeds"] == [1, 2] and p["per_run_epoch"] == "best"

    # Arm 1, as published: the claim's rule (best test epoch of each run) over this run's two seeds.
    results = pd.read_csv(folder / "results.csv")
    assert list(results.claim_id) == [CLAIM, CLAIM] and (results.status == "ok").all() and (results.phase == "published").all()
    best = results.sort_values("seed").test_acc_best
    arms = _row(md, f"{CLAIM} | kd")
    assert arms[3] == "89.48"  # the registry's claimed number
    assert arms[4] == f"{best.mean():.2f} ± {best.std():.2f} (n = 2), best epoch"
    claimed_minus = re.match(r"([+-][\d.]+) \\?\[", arms[6])
    assert claimed_minus and float(claimed_minus.group(1)) == pytest.approx(89.48 - best.mean(), abs=0.006)
    # The verdict is the claim's own rule's: each run's best epoch, the statistic of k runs its rule names.
    journal = [json.loads(line) for line in (folder / "trials.jsonl").read_text().splitlines()]
    curves = [r["test_curve"] for r in sorted(journal, key=lambda r: r["seed"]) if r.get("claim_id") == CLAIM]
    selection = Selection((p["per_run_epoch"],), statistic_of_rule(p["rule"]), p.get("claimed_runs"), True)
    expected = judge_published(p["claimed"], curves, selection, claimed_std=p.get("claimed_std")).by_epoch["best"]
    assert arms[5] == expected.verdict and f"{CLAIM}: {expected.model}".replace("_", "\\_") in md.replace("\n", " ")

    # Arm 2, equal budget: the method and kd as confirmed in the sub-study, and their difference.
    if with_audit:
        (sub,) = [d for d in folder.iterdir() if d.is_dir() and (d / "study.toml").is_file()]
        confirmed = pd.read_csv(sub / "results.csv").query("phase == 'confirm' and status == 'ok'")
        kd = confirmed[confirmed.method == "kd"].test_acc_last
        assert len(kd) == 2 and arms[7] == arms[8] == f"{kd.mean():.2f} ± {kd.std():.2f} (n = 2)"  # the claim's method is kd
        gain = re.match(r"([+-][\d.]+) \\?\[", arms[9])
        last = results.sort_values("seed").test_acc_last
        assert gain and float(gain.group(1)) == pytest.approx(last.mean() - kd.mean(), abs=0.006)
    else:
        assert arms[7] == arms[8] == "—" and "The equal-budget arm was not run" in md

    # The teacher check: the teacher's accuracy measured here beside the claim's teacher_top1.
    teacher = json.loads((folder / "teachers.json").read_text())[CLAIM]
    row = _row(md, f"{CLAIM} | survey\\_resnet8")
    assert float(row[2]) == pytest.approx(teacher["test_acc"], abs=0.006) and row[3] == "89.59"
    assert float(row[4]) == pytest.approx(teacher["test_acc"] - 89.59, abs=0.006) and row[6] == "off by more than the margin"

    # Every departure from the preset is named, the overrides of this run included.
    assert "--epochs 1: 1 epochs instead of the source's 200" in md and "--seeds 2: 2 runs instead of 5" in md
    assert "The teacher is trained here with the preset's recipe" in md
    for departure in p["departures"]:
        assert departure.replace("_", "\\_")[:60] in md.replace("\n", " ")


@pytest.mark.slow
def test_reproduce_local(tmp_path, cifar10, teacher_cache, capsys):
    assert _reproduce(tmp_path, cifar10, "--backend", "local", cache=teacher_cache) == 0
    out = capsys.readouterr().out
    assert f"{CLAIM} kd seed 2: test" in out and "claimed | as published | equal-budget tuned" in out
    _check_report(tmp_path / "reports" / "r", with_audit=False)


@pytest.mark.slow
def test_reproduce_local_with_audit(tmp_path, cifar10, teacher_cache):
    assert _reproduce(tmp_path, cifar10, "--backend", "local", "--with-audit", "--trials", "1", cache=teacher_cache) == 0
    _check_report(tmp_path / "reports" / "r", with_audit=True)


@pytest.mark.slow
def test_reproduce_ray(tmp_path, cifar10, teacher_cache, ray_session):
    assert _reproduce(tmp_path, cifar10, "--backend", "ray", cache=teacher_cache) == 0
    _check_report(tmp_path / "reports" / "r", with_audit=False)


@pytest.mark.slow
def test_reproduce_ray_with_audit(tmp_path, cifar10, teacher_cache, ray_session):
    assert _reproduce(tmp_path, cifar10, "--backend", "ray", "--with-audit", "--trials", "1", cache=teacher_cache) == 0
    _check_report(tmp_path / "reports" / "r", with_audit=True)


# ---------------------------------------------------------------------------------------------
# --dry-run
# ---------------------------------------------------------------------------------------------


def _claims_covering_every_method_and_architecture() -> list[str]:
    """A few mapped claims that between them use every method and every architecture of the registry's."""
    from audit.judge.claims import load_claims
    from audit.reproduce.protocol import mapped_claim_ids

    df = load_claims().set_index("claim_id").loc[mapped_claim_ids()]
    wanted = set(df.method_id) | set(df.teacher_id) | set(df.student_id)
    picked: list[str] = []
    while wanted:
        cover = {cid: len({r.method_id, r.teacher_id, r.student_id} & wanted) for cid, r in df.iterrows()}
        cid = max(cover, key=cover.get)
        picked.append(cid)
        wanted -= {df.loc[cid, "method_id"], df.loc[cid, "teacher_id"], df.loc[cid, "student_id"]}
    return picked


def test_dry_run_plans_every_mapped_claim(tmp_path, capsys, monkeypatch):
    """Every mapped claim gets its plan (protocol, runs, teacher, compute, departures) without data.
    The FLOPs of a step are measured for real by the next test on claims that cover every method and
    architecture; here a counter that records what it was asked keeps the whole registry fast."""
    from audit.engine import flops
    from audit.engine.flops import StageCost
    from audit.reproduce.protocol import mapped_claim_ids

    asked: list[tuple] = []

    def counted(method, config, options, teacher, student, info, *, batch_size, epochs, paper_protocol=False, num_train=50_000):
        asked.append((method, teacher, student))
        return [StageCost("main", epochs, 1e9)]

    monkeypatch.setattr(flops, "training_flops", counted)
    ids = mapped_claim_ids()
    assert main(["reproduce", "all", "--dry-run", "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    heads = re.findall(r"^(C\d+) (\S+) (\S+) -> (\S+) on (\S+), claimed", out, flags=re.M)
    assert [h[0] for h in heads] == ids and len(ids) > 250
    assert {(m, s) for m, _, s in asked} >= {(h[1], h[3]) for h in heads}  # every claim's step was asked for
    assert out.count("  compute    ") == out.count("  recipe     ") == out.count("  departures ") == len(ids)
    assert f"{len(ids)} claim(s), " in out and "GPU-hours at 10 TFLOP/s" in out
    assert not (tmp_path / "reports").exists() and not Path("reports", "reproduce-all").exists()


@pytest.mark.slow
def test_dry_run_measures_every_method_and_architecture(tmp_path, capsys):
    """The real measurement (torch's flop counter on one training step, on the meta device or the CPU)
    for claims that between them use every method and architecture of the registry; no data folder."""
    from audit.engine.datasets import dataset_info
    from audit.engine.flops import training_flops
    from audit.reproduce.protocol import find_claims, resolve
    from methods import get_method

    ids = _claims_covering_every_method_and_architecture()
    assert main(["reproduce", *ids, "--dry-run", "--throughput", "20", "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert re.findall(r"^(C\d+) ", out, flags=re.M) == ids
    # One claim's compute line recomputed here: epochs x images x FLOPs per image x runs.
    p = resolve(find_claims([ids[0]])[0])
    p.options = get_method(p.method).resolve_options(p.options, teacher=p.teacher, student=p.student)
    stages = training_flops(p.method, p.config, p.options, p.teacher, p.student, dataset_info(p.dataset),
                            batch_size=int(p.recipe["batch_size"]), epochs=int(p.recipe["epochs"]), paper_protocol=p.paper_protocol)
    per_run = sum(s.epochs * s.flops_per_image for s in stages) * 50_000
    assert all(s.flops_per_image > 1e6 for s in stages)
    block = out.split(f"{ids[0]} ", 1)[1].split("\nC", 1)[0]
    assert f"{len(p.seeds)} run(s) x 50,000 images: " in block
    student = re.search(r"50,000 images: ([\d.]+) ([PTGE])FLOP", block)
    scale = {"G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}[student.group(2)]
    assert float(student.group(1)) * scale == pytest.approx(per_run * len(p.seeds), rel=0.01)
    assert "GPU-hours at 20 TFLOP/s" in out


def test_dry_run_of_a_crd_claim(capsys, tmp_path):
    assert main(["reproduce", "C090", "--dry-run", "--epochs", "2", "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("C090 crd resnet32x4 -> resnet8x4 on cifar100, claimed 75.51 % (preset repdistiller)")
    assert "2 epochs, batch 64, SGD lr 0.05" in out and "departures 3 (named in the report)" in out


# ---------------------------------------------------------------------------------------------
# the study file
# ---------------------------------------------------------------------------------------------


def test_a_study_file_holds_the_flags(tmp_path, capsys):
    from audit.cli import build_parser
    from audit.commands.reproduce import _reproduction

    f = tmp_path / "crd.toml"
    f.write_text('name = "crd-check"\nclaims = ["C090", "C087"]\nwith_audit = true\ntrials = 3\nepochs = 2\nseeds = 2\n'
                 'backend = "local"\n')
    rep = _reproduction(build_parser().parse_args(["reproduce", str(f)]))
    assert rep.name == "crd-check" and rep.claims == ["C090", "C087"] and rep.with_audit and rep.trials == 3
    assert rep.backend == "local" and all(p.recipe["epochs"] == 2 and p.seeds == [1, 2] for p in rep.protocols)
    # A flag given on the command line wins over the file.
    rep = _reproduction(build_parser().parse_args(["reproduce", str(f), "--epochs", "4", "--name", "other"]))
    assert rep.name == "other" and all(p.recipe["epochs"] == 4 for p in rep.protocols)
    assert main(["reproduce", str(f), "--dry-run", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert re.findall(r"^(C\d+) ", capsys.readouterr().out, flags=re.M) == ["C090", "C087"]


@pytest.mark.parametrize("path", sorted((Path(__file__).parent.parent / "studies" / "reproduce").glob("*.toml")),
                         ids=lambda p: p.stem)
def test_declared_reproductions_resolve(path):
    from audit.cli import build_parser
    from audit.commands.reproduce import _reproduction

    rep = _reproduction(build_parser().parse_args(["reproduce", str(path)]))
    assert rep.protocols and all(p.seeds for p in rep.protocols) and rep.name == path.stem.replace("_", "-")


@pytest.mark.slow
def test_a_study_file_runs(tmp_path, cifar10, teacher_cache):
    f = tmp_path / "one.toml"
    f.write_text(f'name = "from-file"\nclaims = ["{CLAIM}"]\nepochs = 1\nseeds = 2\nbackend = "local"\n')
    assert main(["reproduce", str(f), "--data-dir", str(cifar10), "--out", str(tmp_path / "reports"),
                 "--cache-dir", str(teacher_cache)]) == 0
    _check_report(tmp_path / "reports" / "from-file", with_audit=False)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["unknown claim", "unmapped claim", "missing data set", "wrong teacher architecture",
                                  "two teachers for one file", "study file with a stray key"])
def test_bad_input_is_one_line_and_no_folder(case, tmp_path, cifar10, capsys):
    claims, extra = [CLAIM], []
    if case == "unknown claim":
        claims, message = ["C999"], "unknown claim id 'C999'"
    elif case == "unmapped claim":
        claims, message = ["C167"], "claim C167 cannot be reproduced here: unmapped: method 'KD+DOT'"
    elif case == "missing data set":  # C001 is on CIFAR-100; the folder holds CIFAR-10 only
        claims, message = ["C001"], "claim C001 needs cifar100: CIFAR file not found"
    elif case == "wrong teacher architecture":  # C206's teacher is a resnet20; the file is a RepDistiller resnet8
        claims, extra = ["C206"], ["--teacher-weights", str(_released_resnet8(tmp_path / "ckpt_epoch_240.pth", 10))]
        message = "resnet20"
    elif case == "two teachers for one file":
        claims = ["C206", "C246"]
        extra = ["--teacher-weights", str(_released_resnet8(tmp_path / "ckpt_epoch_240.pth", 10))]
        message = "--teacher-weights gives one teacher, and these claims need 2"
    else:
        f = tmp_path / "bad.toml"
        f.write_text('claims = ["C382"]\nepoch = 1\n')
        claims, message = [str(f)], "unknown keys ['epoch'] in bad.toml"
    capsys.readouterr()
    code = main(["reproduce", *claims, "--data-dir", str(cifar10), "--epochs", "1", "--seeds", "1", "--backend", "local",
                 "--out", str(tmp_path / "reports"), "--cache-dir", str(tmp_path / "cache"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert err.startswith("audit: error: ")
    assert not (tmp_path / "reports").exists()


def test_a_missing_data_folder_is_named(tmp_path, capsys):
    code = main(["reproduce", CLAIM, "--data-dir", str(tmp_path / "nowhere"), "--backend", "local",
                 "--out", str(tmp_path / "reports"), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and f"claim {CLAIM} needs cifar10: " in err, err
    assert not (tmp_path / "reports").exists()


def test_resolving_refuses_what_cannot_run() -> None:
    from audit.reproduce.plan import Reproduction
    from audit.reproduce.protocol import find_claims, resolve

    p = resolve(find_claims([CLAIM])[0])
    with pytest.raises(AuditError, match="unknown backend 'slurm'; allowed: local, ray"):
        Reproduction(name="x", protocols=[p], backend="slurm")
    with pytest.raises(AuditError, match="give at least one claim id"):
        Reproduction(name="x", protocols=[])


def test_the_storage_password_is_never_written(tmp_path) -> None:
    from audit.reproduce.plan import Reproduction
    from audit.reproduce.protocol import find_claims, resolve

    rep = Reproduction(name="x", protocols=[resolve(find_claims([CLAIM])[0])],
                       storage="postgresql://kd:SECRET@db.example.internal:5432/optuna")
    rep.write(tmp_path / "study.toml")
    text = (tmp_path / "study.toml").read_text()
    assert "SECRET" not in text and "postgresql://kd:***@db.example.internal:5432/optuna" in text
