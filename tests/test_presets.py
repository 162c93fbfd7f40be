"""Protocol presets (studies/presets/*.toml) and the protocols they resolve for the registry's
claims: every number cited, every mapped claim resolvable, the sources' facts where they land."""
from __future__ import annotations

import pytest

from audit.errors import AuditError
from audit.judge.claims import load_claims
from audit.reproduce.presets import (
    PRESETS_DIR,
    RECIPE_KEYS,
    load_presets,
    preset_for,
    read_preset,
    repository,
)
from audit.reproduce.protocol import (
    DEFAULT_RUNS,
    Overrides,
    find_claims,
    mapped_claim_ids,
    resolve,
)
from methods.catalogue import cards


@pytest.fixture(scope="module")
def registry():
    return load_claims()


def test_every_preset_cites_every_number() -> None:
    presets = load_presets()
    assert len(presets) >= 8
    for p in presets.values():
        cite = p.recipe["cite"]
        given = {k for k in p.recipe if k in RECIPE_KEYS} | ({"lr_by_student"} if "lr_by_student" in p.recipe else set())
        needed = {"milestones" if k in ("milestones", "milestone_fractions") else "normalize" if k.startswith("normalize") else k
                  for k in given}
        assert needed <= set(cite), (p.name, sorted(needed - set(cite)))
        assert all(isinstance(v, str) and v.strip() for v in cite.values())
        assert p.teacher.get("cite") and p.teacher.get("released"), p.name
        for method, table in p.methods.items():
            assert table.get("cite"), f"{p.name}: {method} has no citation"
        for key in ("per_run_epoch", "runs"):
            if getattr(p, key) is not None:
                assert p.cite.get(key), f"{p.name}: {key} has no citation"


def test_every_mapped_claim_resolves(registry) -> None:
    """The plan of every mapped claim: a preset, the method's values, the seeds and the recipe."""
    ids = mapped_claim_ids(registry)
    assert len(ids) > 250
    by_preset: dict[str, int] = {}
    for row in find_claims(ids, registry):
        p = resolve(row)
        by_preset[p.preset] = by_preset.get(p.preset, 0) + 1
        assert set(p.config) >= set(cards()[p.method].defaults)  # every hyper-parameter is fixed, none searched
        assert p.recipe["schedule"] == "step" and all(0 < m < 1 for m in p.recipe["milestones"])
        assert p.recipe["augment"] == "standard" and len(p.seeds) >= 2
        assert p.per_run_epoch in ("last", "best") and len(p.normalize) == 2
        if cards()[p.method].needs_teacher:
            assert any("teacher is trained here" in d for d in p.departures)
    assert set(by_preset) == {"repdistiller", "mdistiller", "kd_zoo", "seed_survey", "reviewkd"}


def test_the_sources_facts_land_in_the_protocol(registry) -> None:
    crd_kd = resolve(find_claims(["C001"], registry)[0])  # RepDistiller KD, wrn_40_2 -> wrn_16_2
    assert crd_kd.config["temperature"] == 4.0 and crd_kd.config["alpha"] == 0.9 and crd_kd.config["strength"] == 0.0
    assert crd_kd.recipe["milestones"] == [150 / 240, 180 / 240, 210 / 240] and crd_kd.recipe["lr"] == 0.05
    assert crd_kd.recipe["nesterov"] is False and crd_kd.recipe["batch_size"] == 64
    assert crd_kd.per_run_epoch == "last" and len(crd_kd.seeds) == DEFAULT_RUNS
    assert crd_kd.normalize == [[0.5071, 0.4867, 0.4408], [0.2675, 0.2565, 0.2761]]
    # A MobileNetV2 or ShuffleNet student trains at lr 0.01, its teacher at the teacher's own.
    rows = registry[(registry.source.str.startswith("HobbitLong")) & (registry.student_id == "mobilenetv2")
                    & (registry.method_id == "nst")]
    nst = resolve(rows.iloc[0])
    assert nst.recipe["lr"] == 0.01 and nst.teacher_recipe["lr"] == 0.05
    assert nst.config["beta"] == 100.0  # RepDistiller's -b 50 without the 1/2: beta = 100 in our beta/2 convention
    # DKD: mdistiller's beta per pair, the best epoch of each of 5 runs.
    dkd = resolve(find_claims(["C184"], registry)[0])  # resnet56 -> resnet20
    assert dkd.config["dkd_beta"] == 2.0 and dkd.per_run_epoch == "best" and len(dkd.seeds) == 5
    # The seed survey: the claim's own epochs, its MultiStepLR at int(0.33 E) and int(0.66 E).
    uda350 = resolve(find_claims(["C377"], registry)[0])
    assert uda350.recipe["epochs"] == 350 and uda350.recipe["milestones"] == [115 / 350, 231 / 350]
    assert uda350.options == {"second_view": "autoaugment-cifar10"} and uda350.config["temperature"] == 5.0
    takd = resolve(find_claims(["C368"], registry)[0])
    assert takd.paper_protocol and takd.options == {"assistant": "survey_resnet20"} and takd.config["kl_reduction"] == "batch"
    # ReviewKD's weight by pair, and a pair whose weight the authors never published is named.
    assert resolve(find_claims(["C339"], registry)[0]).config["beta"] == 5.0
    assert any("not public" in d for d in resolve(find_claims(["C340"], registry)[0]).departures)


def test_overrides_are_departures(registry) -> None:
    row = find_claims(["C001"], registry)[0]
    p = resolve(row, Overrides(epochs=2, seeds=3, released_teacher=True))
    assert p.recipe["epochs"] == 2 and p.recipe["milestones"] == [150 / 240, 180 / 240, 210 / 240]
    assert p.seeds == [1, 2, 3]
    assert any(d.startswith("--epochs 2") for d in p.departures) and any(d.startswith("--seeds 3") for d in p.departures)
    assert not any("teacher is trained here" in d for d in p.departures)


@pytest.mark.parametrize("ids,message", [
    (["C999"], "unknown claim id 'C999'"),
    (["C167"], "claim C167 cannot be reproduced here: unmapped: method 'KD+DOT'"),
    (["C001", "c001"], "claim ids repeated: C001"),
])
def test_bad_claims_are_one_line(ids, message, registry) -> None:
    with pytest.raises(AuditError, match=message.replace("+", r"\+")):
        find_claims(ids, registry)


def test_sources_map_to_presets() -> None:
    assert repository("HobbitLong/RepDistiller@b84f547:README.md") == "HobbitLong/RepDistiller"
    assert preset_for("karanchahal/distiller:plots/350epoch.png (paper Table 4, 350 epochs)").name == "seed_survey"
    assert preset_for("giakoumoglou/distillers:README.md (quoting CRD paper)").name == "repdistiller"
    with pytest.raises(AuditError, match="no protocol preset covers the claim source 'someone/else'"):
        preset_for("someone/else:README.md")


def test_a_bad_preset_is_one_line(tmp_path) -> None:
    good = (PRESETS_DIR / "repdistiller.toml").read_text()
    bad = tmp_path / "repdistiller.toml"
    bad.write_text(good.replace("[methods.kd]\ntemperature = 4.0", "[methods.kd]\ntemperatur = 4.0"))
    with pytest.raises(AuditError, match=r"\['temperatur'\] are not hyper-parameters of kd"):
        read_preset(bad)
    bad.write_text(good.replace('name = "repdistiller"', 'name = "other"'))
    with pytest.raises(AuditError, match="must be the file's name"):
        read_preset(bad)


def test_presets_name_real_architectures_and_policies() -> None:
    from audit.engine.models import model_names
    from audit.engine.policies import get_policy

    for p in load_presets().values():
        assert set(p.recipe.get("lr_by_student", {})) <= set(model_names()), p.name
        get_policy(p.recipe["augment"])
        for method, table in p.methods.items():
            for pair in table.get("by_pair", {}):
                assert set(pair.split("->")) <= set(model_names()), (p.name, pair)
            for value in table.get("options", {}).values():
                for v in value if isinstance(value, list) else [value]:
                    assert v in model_names() or get_policy(v), (p.name, method, v)
