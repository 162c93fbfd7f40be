"""The claims registry: every shared row kept, names mapped or reported, sanity warnings."""
from __future__ import annotations

import pandas as pd
import pytest

from audit.cli import main
from audit.errors import AuditError
from audit.judge import claim_warnings, claims

SOURCE = claims.SOURCE_PATH
needs_source = pytest.mark.skipif(not SOURCE.is_file(), reason="shared claims file not present")


def _text(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def row(**kw) -> dict[str, str]:
    base = dict(claim_id="X1", paper="Some et al. 2020", method="KD", dataset="CIFAR-100",
                teacher="resnet32x4", student="resnet8x4", claimed_top1="74.00", teacher_top1="79.42",
                baseline_student_top1="72.50", selection="last_epoch", source="repo/a:README.md", notes="")
    base.update(kw)
    return base


def normalised(*rows: dict[str, str]) -> pd.DataFrame:
    return claims._typed(claims.normalise(pd.DataFrame(list(rows))))


# --- the committed registry ------------------------------------------------------------------


@needs_source
def test_every_shared_row_is_in_the_registry_verbatim():
    src, reg = _text(SOURCE), _text(claims.REGISTRY_PATH)
    assert len(reg) == len(src) == 387
    assert list(reg["claim_id"]) == list(src["claim_id"])
    pd.testing.assert_frame_equal(reg[list(claims.SOURCE_COLUMNS)], src[list(claims.SOURCE_COLUMNS)])
    assert set(reg["mapping_status"]) - {"ok"} == {s for s in reg["mapping_status"] if s.startswith("unmapped: ")}


@needs_source
def test_committed_registry_is_what_build_registry_writes(tmp_path):
    with pytest.warns(UserWarning, match="no mapping"):
        built = claims.build_registry(SOURCE, tmp_path / "registry.csv")
    assert (tmp_path / "registry.csv").read_bytes() == claims.REGISTRY_PATH.read_bytes()
    assert len(built) == 387


def test_load_claims_types():
    df = claims.load_claims()
    assert df["claimed_top1"].dtype == float and str(df["claimed_runs"].dtype) == "Int64"
    assert set(df["rule"]) <= set(claims.RULES)
    c072 = df.set_index("claim_id").loc["C072"]
    assert pd.isna(c072["claimed_top1"])  # 'N/A' in the source


def test_registry_rules_runs_and_epochs():
    df = claims.load_claims().set_index("claim_id")
    assert (df.loc["C164", "rule"], df.loc["C164", "claimed_runs"]) == ("mean_of_k", 5)
    assert (df.loc["C343", "rule"], df.loc["C343", "claimed_runs"]) == ("median_of_k", 5)
    assert (df.loc["C362", "rule"], df.loc["C362", "claimed_runs"]) == ("single_run", 1)
    assert (df.loc["C368", "rule"], df.loc["C368", "claimed_runs"], df.loc["C368", "epochs"]) == ("best_epoch_test", 1, 200)
    assert df.loc["C377", "epochs"] == 350
    assert df.loc["C204", "rule"] == "last_epoch" and df.loc["C204", "rule_basis"].startswith("assumed")
    assert df.loc["C001", "rule_basis"] == "stated"
    assert df.loc["C357", "third_party_reproduced"] == pytest.approx(68.34)


def test_registry_maps_the_survey_to_its_own_architectures():
    df = claims.load_claims().set_index("claim_id")
    assert (df.loc["C368", "teacher_id"], df.loc["C368", "student_id"]) == ("survey_resnet26", "survey_resnet8")
    assert df.loc["C383", "teacher_id"] == "survey_resnet20"  # not the CIFAR resnet20 of C003
    assert df.loc["C003", "student_id"] == "resnet20"
    assert df.loc["C386", "teacher_id"] == "survey_wrn_10_1" and df.loc["C387", "teacher_id"] == "survey_wrn_16_4"
    assert df.loc["C385", "teacher_id"] == "survey_resnet18"


def test_registry_reports_unmapped_names():
    df = claims.load_claims().set_index("claim_id")
    assert df.loc["C204", "mapping_status"] == "unmapped: method 'Logits'"
    assert "dataset 'ImageNet'" in df.loc["C174", "mapping_status"]
    assert df.loc["C174", "student_id"] == ""  # ImageNet's ResNet18 is not our resnet18
    assert claims.unmapped_names(df.reset_index())["method 'CRD+KD'"] == 13


# --- name mapping ----------------------------------------------------------------------------


@pytest.mark.parametrize("name,expected", [
    ("resnet-110", "resnet110"), ("ResNet110", "resnet110"), ("wrn-40-2", "wrn_40_2"),
    ("WRN-40-2", "wrn_40_2"), ("resnet32x4", "resnet32x4"), ("ResNet-32x4", "resnet32x4"),
    ("MobileNetV2", "mobilenetv2"), ("MobileNet-V2", "mobilenetv2"), ("ShuffleV1", "shufflenet_v1"),
    ("ShuffleNetV1", "shufflenet_v1"), ("ShuffleV2", "shufflenet_v2"), ("ShuffleNet-V2", "shufflenet_v2"),
    ("vgg13", "vgg13"), ("VGG8", "vgg8"), ("resnet8x4", "resnet8x4"), ("wrn-16-2", "wrn_16_2"),
])
def test_architecture_names(name, expected):
    df = normalised(row(teacher=name, student=name))
    assert (df.loc[0, "teacher_id"], df.loc[0, "student_id"]) == (expected, expected)


@pytest.mark.parametrize("name,expected", [
    ("resnet8", "survey_resnet8"), ("resnet20", "survey_resnet20"), ("resnet26", "survey_resnet26"),
    ("resnet18", "survey_resnet18"), ("wrn-10-1", "survey_wrn_10_1"), ("wrn-16-4", "survey_wrn_16_4"),
])
def test_survey_architecture_names(name, expected):
    survey = row(paper="Ruffy & Chahal 2019, The State of Knowledge Distillation", dataset="CIFAR-10",
                 teacher=name, student="resnet8", source="karanchahal/distiller:plots/table.png")
    df = normalised(survey)
    assert df.loc[0, "teacher_id"] == expected and df.loc[0, "student_id"] == "survey_resnet8"


@pytest.mark.parametrize("name,expected", [
    ("FitNet", "feature_kd"), ("Fitnet", "feature_kd"), ("OFD", "oh"), ("OH", "oh"), ("NOKD", "nokd"),
    ("baseline", "nokd"), ("KD", "kd"), ("AT", "at"), ("SP", "sp"), ("CC", "cc"), ("VID", "vid"),
    ("RKD", "rkd"), ("PKT", "pkt"), ("AB", "ab"), ("FT", "ft"), ("FSP", "fsp"), ("NST", "nst"),
    ("CRD", "crd"), ("DKD", "dkd"), ("ReviewKD", "reviewkd"), ("DIST", "dist"), ("LSKD", "lskd"),
    ("KD w/ LS", "lskd"), ("TAKD", "takd"), ("MKD", "mkd"), ("UDA", "uda"), ("UDA-NOKD", "uda_nokd"),
    ("SFD", "sfd"), ("PKD", "pkd"), ("KDSVD", "kdsvd"), ("feature_kd", "feature_kd"),
])
def test_method_names(name, expected):
    assert normalised(row(method=name)).loc[0, "method_id"] == expected


def test_every_catalogue_name_and_alias_maps_to_its_method():
    from methods.catalogue import cards

    for card in cards().values():
        for spelling in (card.name, *card.aliases):
            assert normalised(row(method=spelling)).loc[0, "method_id"] == card.name, spelling


@pytest.mark.parametrize("name", ["DIST+", "CRD+KD", "KD+DOT", "Logits", "Sobolev"])
def test_look_alike_methods_stay_unmapped(name):
    df = normalised(row(method=name))
    assert df.loc[0, "method_id"] == "" and df.loc[0, "mapping_status"] == f"unmapped: method {name!r}"


def test_unmapped_names_are_reported_not_dropped(tmp_path):
    src = tmp_path / "src.csv"
    pd.DataFrame([row(claim_id="A1"), row(claim_id="A2", method="Foo", teacher="PyramidNet-200")]).to_csv(src, index=False)
    with pytest.warns(UserWarning, match=r"method 'Foo' \(1\)"):
        df = claims.build_registry(src, tmp_path / "reg.csv")
    assert list(df["claim_id"]) == ["A1", "A2"]
    assert df.loc[1, "mapping_status"] == "unmapped: method 'Foo', teacher 'PyramidNet-200'"
    assert df.loc[1, "student_id"] == "resnet8x4"  # what does map is still mapped
    assert any(w.startswith("A2: unmapped") for w in claim_warnings.sanity_warnings(df))


def test_bad_source_files_are_one_clear_error(tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame([row(), row()]).to_csv(bad, index=False)
    with pytest.raises(AuditError, match="repeats claim_id"):
        claims.build_registry(bad, tmp_path / "out.csv")
    pd.DataFrame([row()]).drop(columns=["selection"]).to_csv(bad, index=False)
    with pytest.raises(AuditError, match="lacks column"):
        claims.load_claims(bad)
    with pytest.raises(AuditError, match="not found"):
        claims.load_claims(tmp_path / "missing.csv")


def test_load_claims_normalises_a_source_format_file(tmp_path):
    src = tmp_path / "src.csv"
    pd.DataFrame([row(method="FitNet")]).to_csv(src, index=False)
    assert claims.load_claims(src).loc[0, "method_id"] == "feature_kd"


def test_std_and_runs_from_notes():
    df = normalised(row(selection="unspecified", notes="mean of 3 runs, 74.00 ± 0.21"))
    assert df.loc[0, "claimed_std"] == pytest.approx(0.21) and df.loc[0, "claimed_runs"] == 3
    assert df.loc[0, "rule"] == "last_epoch" and df.loc[0, "rule_basis"].startswith("assumed")
    df = normalised(row(selection="median_of_3", notes="std 0.4"))
    assert (df.loc[0, "rule"], df.loc[0, "claimed_runs"], df.loc[0, "claimed_std"]) == ("median_of_k", 3, 0.4)


# --- sanity warnings -------------------------------------------------------------------------


def crafted() -> pd.DataFrame:
    return normalised(
        row(claim_id="S1", claimed_top1="80.00"),  # above its teacher (79.42)
        row(claim_id="S2", method="AT", claimed_top1="73.10", source="repo/a:README.md"),
        row(claim_id="S3", method="AT", claimed_top1="73.90", source="repo/b:README.md",
            teacher="ResNet32x4", student="ResNet8x4"),  # same pair, another source, another number
        row(claim_id="S4", method="SP", claimed_top1="72.70"),  # +0.2 over the 72.50 baseline
        row(claim_id="S5", method="VID", claimed_top1="74.4", source="repo/a:README.md"),
        row(claim_id="S6", method="VID", claimed_top1="74.43", source="repo/b:README.md"),  # rounding only
        row(claim_id="S7", method="CC", claimed_top1="75.00", selection="mean_of_3", notes="± 0.2"),
        row(claim_id="S8", method="RKD", claimed_top1="N/A"),
    )


def warnings_of(cid: str) -> list[str]:
    return [w for w in claim_warnings.sanity_warnings(crafted()) if w.startswith(cid + ":")]


def test_student_at_or_above_teacher():
    assert any("at or above its teacher" in w for w in warnings_of("S1"))
    assert not any("at or above" in w for w in warnings_of("S2"))


def test_conflicting_numbers_from_different_sources():
    assert any("73.9 in S3" in w for w in warnings_of("S2"))
    assert any("73.1 in S2" in w for w in warnings_of("S3"))
    assert not any(" in S" in w for w in warnings_of("S5") + warnings_of("S6"))  # 74.4 vs 74.43 is rounding


def test_gain_within_seed_spread():
    assert any("smaller than the typical seed spread" in w for w in warnings_of("S4"))
    assert not any("seed spread" in w for w in warnings_of("S1"))


def test_gain_taken_from_a_nokd_claim_when_the_row_has_no_baseline():
    df = normalised(row(claim_id="N1", method="NOKD", claimed_top1="72.50", baseline_student_top1=""),
                    row(claim_id="K1", method="KD", claimed_top1="72.60", baseline_student_top1=""))
    assert any(w.startswith("K1: claimed gain") for w in claim_warnings.sanity_warnings(df))


def test_no_variance_reported():
    assert any("no variance reported" in w for w in warnings_of("S1"))
    assert not any("no variance" in w for w in warnings_of("S7"))


def test_missing_claimed_number():
    assert any("no claimed number" in w for w in warnings_of("S8"))


def test_every_warning_names_its_claim():
    assert all(w.split(":")[0] in set(crafted()["claim_id"]) for w in claim_warnings.sanity_warnings(crafted()))


def test_registry_warnings_include_known_problems():
    found = claim_warnings.sanity_warnings(claims.load_claims())
    assert any(w.startswith("C163: student claimed at or above its teacher") for w in found)
    assert any(w.startswith("C004: ") and "C247" in w for w in found)  # RepDistiller vs KD zoo
    assert any(w.startswith("C072: no claimed number") for w in found)


# --- finding claims --------------------------------------------------------------------------


def test_filter_accepts_our_ids_and_paper_names():
    df = claims.load_claims()
    by_id = claims.filter_claims(df, method="feature_kd", dataset="cifar100", teacher="wrn_40_2", student="wrn_16_2")
    by_name = claims.filter_claims(df, method="FitNet", dataset="CIFAR-100", teacher="wrn-40-2", student="WRN-16-2")
    assert list(by_id["claim_id"]) == list(by_name["claim_id"]) == ["C008"]
    assert set(claims.filter_claims(df, paper="mdistiller")["claim_id"]) == {f"C{i}" for i in range(164, 204)}
    assert len(claims.filter_claims(df, teacher="ResNet-34")) == 17  # unmapped names filter too (ResNet34 as well)


def test_matching_claims_for_a_study():
    df = claims.load_claims()
    got = claims.matching_claims(df, "kd", "cifar10", "survey_resnet26", "survey_resnet8")
    assert set(got["claim_id"]) == {"C371", "C379", "C384"}
    got = claims.matching_claims(df, "kd", "cifar10", "survey_resnet26", "survey_resnet8", epochs=200)
    assert set(got["claim_id"]) == {"C371", "C384"}
    assert claims.matching_claims(df, "fsp", "cifar100", "wrn_40_2", "wrn_40_1").empty  # C072 has no number


# --- reproduced number under the claim's rule ------------------------------------------------

RUNS = [[60.0, 72.0, 71.0], [65.0, 70.0, 73.0]]


@pytest.mark.parametrize("rule,expected", [
    ("last_epoch", [71.0, 73.0]), ("best_epoch_test", [72.0, 73.0]), ("mean_of_k", [71.0, 73.0]),
    ("median_of_k", [71.0, 73.0]), ("single_run", [71.0, 73.0]),
])
def test_reproduced_value_per_rule(rule, expected):
    assert claims.reproduced_value(RUNS, rule) == expected


@pytest.mark.parametrize("runs,rule,message", [
    (RUNS, "best_epoch_val", "unknown selection rule"), ([], "last_epoch", "no runs"),
    ([[70.0], []], "last_epoch", "run 1 has no"), ([[float("nan")]], "last_epoch", "non-finite"),
])
def test_reproduced_value_bad_input(runs, rule, message):
    with pytest.raises(AuditError, match=message):
        claims.reproduced_value(runs, rule)


# --- audit claims ----------------------------------------------------------------------------


def test_cli_lists_and_filters(capsys):
    assert main(["claims", "--method", "FitNet", "--student", "resnet20", "--dataset", "cifar100"]) == 0
    out = capsys.readouterr().out
    assert "C010" in out and "C251" in out and "4 claims" in out


def test_cli_lists_unmapped_and_warnings(capsys):
    assert main(["claims", "--dataset", "ImageNet", "--warnings"]) == 0
    out = capsys.readouterr().out
    assert "21 claims" in out and "unmapped names:" in out and "method 'ICKD' (1)" in out
    assert "C349: unmapped" in out


def test_cli_unknown_filter_is_one_clear_error(capsys):
    assert main(["claims", "--teacher", "nosuchnet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no claim has teacher 'nosuchnet'" in err and "wrn_40_2" in err
