"""Join trained CTC runs into one `ctc-ensemble` run folder (frame posteriors averaged), ready
for scripts/make_bundle.py. Members must share the frame grid (every `ctc` model does), and the
ensemble is only kept when it beats its members on val (scripts/select_on_val.py).

    .venv/bin/python scripts/make_ensemble.py RUN1 RUN2 [...] --out runs/ensemble
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from digitseq.core import files
from digitseq.models import checkpoint, registry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    members, state = [], {}
    for i, run in enumerate(args.runs):
        cfg = json.loads((run / "config.json").read_text())
        if cfg["model"]["arch"] != "ctc":
            raise SystemExit(f"{run}: only 'ctc' runs can be joined, not {cfg['model']['arch']}")
        members.append(cfg["model"]["hparams"])
        for k, v in checkpoint.load_state_dict(run / "best.pth").items():
            state[f"members.{i}.{k}"] = v.float() if v.is_floating_point() else v
    model = registry.build_model("ctc-ensemble", members=members)
    model.load_state_dict(state)
    first = json.loads((args.runs[0] / "config.json").read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint.save_weights(model, args.out / "best.pth")
    files.write_json(
        args.out / "config.json",
        {
            "model": checkpoint.model_config("ctc-ensemble", {"members": members}),
            "train": first["train"],
            "parameters": registry.count_parameters(model),
            "torch": first["torch"],
            "members": [str(r) for r in args.runs],
        },
    )
    rows = []
    for i, run in enumerate(args.runs):  # the members' own histories, for the model card
        for r in json.loads((run / "history.json").read_text()):
            rows.append({**r, "member": i})
    files.write_json(args.out / "history.json", rows)
    print(f"ensemble of {len(members)} written to {args.out}")


if __name__ == "__main__":
    main()
