"""Reliability figures for the README (issue 15): the bad-input suite, exports under concurrency
and under kills, and a long click session's memory.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/reliability.py [--rounds 40] [--kills 60]
        [--soak-clicks 1000] [--no-soak]

1. Bad inputs: runs ``tests/test_bad_input.py`` (every case is one test or one parameter) and
   counts the cases tried and the cases handled (passed).
2. Concurrency: two processes export the same patch into one folder at the same moment, once per
   round. Counted: exports lost (written but not found complete afterwards, or with a sidecar
   that describes another export's mask).
3. Kills: a process exports patch ``x`` again and again (a new mask each time) and is killed with
   SIGKILL at a random moment, once per round. Counted: exports it had finished that are not
   complete afterwards (lost), incomplete sets left behind (expected: the interrupted one), and
   incomplete sets that a reader (``exports.latest_exports``, the pairing of every CLI command
   and of training) took as complete (must be 0).
4. Soak: 1,000 random clicks on one 1500x1500 patch with the tiny random click model (the
   session's undo history is what grows), resident memory at the start and at the end.

Writes ``benchmarks/reliability.json`` and ``benchmarks/reliability.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from machine import cpu_model

from napari_cosas.io.exports import (
    SIDECARS_DIR,
    export_problem,
    latest_exports,
    load_sidecar,
)
from napari_cosas.io.image_io import load_mask

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}

#: An export writer: exports patch NAME with a mask encoding (writer, round), ROUNDS times; a
#: round starts at START + round * GAP seconds (so that two writers start each round together);
#: ROUNDS = 0 means forever (until killed). Prints "done <stem> <writer> <round>" after each.
WRITER = """
import json, sys, time
import numpy as np
from napari_cosas.io.exports import write_export
from napari_cosas.io.image_io import encode_image

out, name, writer, rounds, start, gap = sys.argv[1:7]
writer, rounds, start, gap = int(writer), int(rounds), float(start), float(gap)
encode_image(np.zeros((8, 8), np.uint8), ".png")  # load the PNG plugin before the clock starts
print("ready", flush=True)
r = 0
while rounds == 0 or r < rounds:
    while time.time() < start + r * gap:
        pass
    mask = np.unpackbits(np.array([[writer], [r % 256], [r // 256]], np.uint8), axis=1)
    mask = np.kron(mask, np.ones((64, 32), np.uint8)) * 255
    result = write_export(out, name, mask=encode_image(mask, ".png"), suffix=".png",
                          geojson=json.dumps({"writer": writer, "round": r}).encode(),
                          sidecar={"format": "napari-cosas-sidecar/1", "image": {"name": name},
                                   "writer": writer, "round": r})
    print("done", result.sidecar.stem, writer, r, flush=True)
    r += 1
"""


def _decode(mask_path: Path) -> tuple[int, int]:
    """(writer, round) from a mask written by WRITER."""
    bits = load_mask(mask_path)[::64, ::32] > 0
    writer, low, high = np.packbits(bits, axis=1)[:, 0]
    return int(writer), int(low) + 256 * int(high)


def _consistent(sidecar: Path) -> bool:
    """A complete export whose mask and GeoJSON are the ones its sidecar describes."""
    if export_problem(sidecar) is not None:
        return False
    data = load_sidecar(sidecar)
    geojson = json.loads((sidecar.parent / data["geojson_file"]).read_text())
    expected = (data["writer"], data["round"])
    return _decode(sidecar.parent / data["mask_file"]) == expected and (geojson["writer"], geojson["round"]) == expected


def bad_input_suite() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:warnings",
                        str(ROOT / "tests" / "test_bad_input.py"), f"--junitxml={report}"],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, check=False)
        suite = ET.parse(report).getroot().find("testsuite")
    tried = int(suite.get("tests"))
    failed = int(suite.get("failures")) + int(suite.get("errors"))
    skipped = int(suite.get("skipped"))
    return {"cases_tried": tried - skipped, "cases_handled": tried - skipped - failed, "skipped": skipped}


def concurrency(rounds: int, gap: float = 0.08) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time() + 3.0
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, tmp, "patch", str(w), str(rounds), str(start),
                                   str(gap)], env=ENV, stdout=subprocess.PIPE, text=True) for w in (1, 2)]
        finished = []
        for proc in procs:
            out, _ = proc.communicate(timeout=600)
            finished += [line.split()[1:] for line in out.splitlines() if line.startswith("done")]
        sidecars = {p.stem: p for p in (Path(tmp) / SIDECARS_DIR).glob("*.json")}
        lost = sum(1 for stem, *_ in finished if stem not in sidecars or not _consistent(sidecars[stem]))
        return {"rounds": rounds, "processes": 2, "exports_finished": len(finished), "exports_lost": lost,
                "distinct_stems": len(sidecars)}


def kills(rounds: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    lost = incomplete_left = taken_as_complete = finished_total = 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for _ in range(rounds):
            proc = subprocess.Popen([sys.executable, "-c", WRITER, tmp, "x", "1", "0", "0", "0"], env=ENV,
                                    stdout=subprocess.PIPE, text=True)
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.3))
            proc.send_signal(signal.SIGKILL)
            out_text, _ = proc.communicate()
            finished = [line.split()[1] for line in out_text.splitlines() if line.startswith("done")]
            finished_total += len(finished)
            sidecars = {p.stem: p for p in (out / SIDECARS_DIR).glob("*.json")}
            lost += sum(1 for stem in finished if stem not in sidecars or not _consistent(sidecars[stem]))
            incomplete = {stem for stem, path in sidecars.items() if export_problem(path) is not None}
            incomplete_left = len(incomplete)
            masks = out / "masks"
            if masks.is_dir():
                chosen = latest_exports(masks).get("x")
                if chosen is not None and not _consistent(chosen.sidecar):
                    taken_as_complete += 1
    return {"rounds": rounds, "exports_finished": finished_total, "exports_lost": lost,
            "incomplete_sets_left": incomplete_left, "incomplete_taken_as_complete": taken_as_complete}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def soak(clicks: int, side: int = 1500, seed: int = 0) -> dict:
    import torch

    from napari_cosas.models.sam_models import build_tiny_sam
    from napari_cosas.inference.predictor import ClickPredictor
    from napari_cosas.inference.model_bundle import ModelBundle
    from napari_cosas.interaction.session import AnnotationSession

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    predictor = ClickPredictor(build_tiny_sam(decoder="enhanced"), "tiny", device="cpu")
    session = AnnotationSession(ModelBundle(predictor=predictor, segmenter_id="none"))
    patch = session.add_array("soak", rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    session.select(0)
    session.click(patch, side // 2, side // 2, True)
    start_mb = _rss_mb()
    t0 = time.perf_counter()
    for _ in range(clicks - 1):
        session.click(patch, int(rng.integers(side)), int(rng.integers(side)), bool(rng.integers(2)))
    return {"clicks": clicks, "patch": f"{side}x{side}", "rss_start_mb": round(start_mb, 1),
            "rss_end_mb": round(_rss_mb(), 1), "seconds": round(time.perf_counter() - t0, 1)}


def to_markdown(result: dict) -> str:
    b, c, k = result["bad_inputs"], result["concurrency"], result["kills"]
    lines = [
        "# Reliability",
        "",
        f"Command: `{result['command']}`. Machine: {result['machine']}; {result['load']}.",
        "",
        "| what | result |",
        "| --- | --- |",
        f"| bad inputs and faults (`tests/test_bad_input.py`): cases handled / tried | {b['cases_handled']} / "
        f"{b['cases_tried']} ({b['skipped']} skipped) |",
        f"| two processes exporting one patch at the same moment: rounds, exports lost | {c['rounds']} rounds, "
        f"{c['exports_lost']} of {c['exports_finished']} lost ({c['distinct_stems']} distinct stems) |",
        f"| an exporting process killed (SIGKILL) at a random moment: rounds, exports lost, incomplete sets taken "
        f"as complete | {k['rounds']} rounds, {k['exports_lost']} of {k['exports_finished']} lost, "
        f"{k['incomplete_taken_as_complete']} taken as complete ({k['incomplete_sets_left']} interrupted sets "
        "left, all recognised) |",
    ]
    if result.get("soak"):
        s = result["soak"]
        lines.append(f"| {s['clicks']} clicks on one {s['patch']} patch: resident memory start / end | "
                     f"{s['rss_start_mb']:.0f} MB / {s['rss_end_mb']:.0f} MB ({s['seconds']:.0f} s) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="concurrent-export rounds")
    parser.add_argument("--kills", type=int, default=60, help="killed-export rounds")
    parser.add_argument("--soak-clicks", type=int, default=1000)
    parser.add_argument("--no-soak", action="store_true")
    parser.add_argument("--load", default="nothing else measured", help="what else ran on the machine")
    args = parser.parse_args()
    logging.getLogger("napari_cosas").setLevel(logging.ERROR)  # the interrupted exports' warnings, expected
    result = {
        "command": shlex.join(["python", "benchmarks/reliability.py", *sys.argv[1:]]),
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load": args.load,
        "bad_inputs": bad_input_suite(),
        "concurrency": concurrency(args.rounds),
        "kills": kills(args.kills),
    }
    if not args.no_soak:
        result["soak"] = soak(args.soak_clicks)
    (HERE / "reliability.json").write_text(json.dumps(result, indent=2) + "\n")
    (HERE / "reliability.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
