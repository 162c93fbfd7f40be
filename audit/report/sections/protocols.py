"""A reproduction's protocol section: what each claim's as-published arm trained, from which
preset, with which citations, and every known difference from the source's own run (the
preset's departures and those of this run: fewer epochs or seeds, a teacher trained here)."""
from __future__ import annotations

import json

from audit.report.document import Section
from audit.report.format import fmt_config


def recipe_text(r: dict) -> str:
    epochs = int(r["epochs"])
    steps = ", ".join(f"{m * epochs:g}" for m in r.get("milestones", []))
    return (f"{epochs} epochs, batch {r['batch_size']}, SGD lr {r['lr']:g} momentum {r['momentum']:g}"
            f"{' (Nesterov)' if r.get('nesterov') else ''}, weight decay {r['weight_decay']:g}, "
            f"lr x{r.get('gamma', 0.1):g} after epochs {steps or 'none'}, augmentation {r.get('augment', '?')}")


def protocols_section(protocols: list[dict], number: int) -> Section:
    sec = Section("protocols", number, "Protocols and departures", short="Protocols")
    sec.p("Each claim's as-published arm: its source's preset (studies/presets/), nothing tuned, trained on the whole "
          "training split; the departures are every known way this run differs from the source's.")
    for p in protocols:
        sec.kv([
            ("claim", f"{p['claim_id']}: {p['method']} {p['teacher']} → {p['student']} on {p['dataset']}, claimed "
                      f"{p['claimed']:.2f} % ({p['paper']}; {p['source']})"),
            ("preset", p["preset"]),
            ("selection", f"registry rule {p['rule']}; each run contributes its {p['per_run_epoch']} test epoch; "
                          f"{len(p['seeds'])} seed(s) {', '.join(map(str, p['seeds']))}"),
            ("recipe", recipe_text(p["recipe"])),
            ("normalisation", f"mean {p['normalize'][0]}, std {p['normalize'][1]}"),
            ("method", fmt_config(p["config"])),
            ("options", json.dumps(p.get("options", {}), sort_keys=True) if p.get("options") else "none"),
            ("extra stages", "their own epochs on top of the recipe's (the source's protocol)" if p.get("paper_protocol")
             else "none, or inside the recipe's epochs"),
            ("teacher", f"{p['teacher']}; the source released: {p.get('teacher_released') or 'not stated'}"),
        ])
        for note in p.get("notes", []):
            sec.note(note)
        if p.get("departures"):
            sec.warn(f"{p['claim_id']} departs from its source: " + " ".join(
                f"({i}) {d}" for i, d in enumerate(p["departures"], 1)))
        if p.get("citations"):
            sec.kv([(k, v) for k, v in sorted(p["citations"].items())])
    return sec
