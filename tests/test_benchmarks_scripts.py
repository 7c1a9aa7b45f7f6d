"""The benchmark scripts' own logic: README writing, offline asv assets, cost report, asv
tracks, the rank-side MPI timers. The MPI ones run ``mpiexec -n 2`` (a few seconds each on an
idle machine); ``--quick`` runs of the changed scripts must produce the per-repetition ratio
fields, and the ratios must equal a NumPy recomputation from the per-repetition samples
they report (min and median of the paired quotients)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the benchmarks package sits, uninstalled, at the repository root
    sys.path.insert(0, str(ROOT))

from benchmarks import asv_offline, cost_report  # noqa: E402


def test_write_readme_replaces_only_between_markers(tmp_path):
    compare = pytest.importorskip("benchmarks.compare")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- perf-table -->\nold table\n<!-- /perf-table -->\noutro\n")
    compare.write_readme("| new | table |", str(readme))
    assert readme.read_text() == ("intro\n<!-- perf-table -->\n| new | table |\n"
                                  "<!-- /perf-table -->\noutro\n")
    readme.write_text("no markers here\n")
    with pytest.raises(SystemExit, match="has no <!-- perf-table --> ... <!-- /perf-table --> markers"):
        compare.write_readme("x", str(readme))


def test_offline_rewrite_covers_every_cdn_asset_of_the_installed_asv():
    asv = pytest.importorskip("asv")
    page = Path(asv.__file__).parent / "www" / "index.html"
    html = page.read_text()
    out = asv_offline.rewrite_html(html)
    # No script or stylesheet is loaded from the internet any more, and SRI hashes of the
    # CDN bytes are gone with the CDN URLs.
    import re

    for tag in re.findall(r"<(?:script|link)\b[^>]*>", out):
        if "src=\"https://" in tag or ("stylesheet" in tag and "href=\"https://" in tag):
            pytest.fail(f"CDN asset left in the page: {tag}")
    assert 'src="vendor/jquery-3.3.1.min.js"' in out
    assert out.count("integrity=") == 0
    # Everything that is not a CDN tag is byte-for-byte asv's output.
    assert out.count("<script") == html.count("<script")
    assert 'src="asv.js"' in out or "asv.js" in out


def test_offline_rewrite_refuses_unknown_cdn_assets():
    html = '<script src="https://cdn.example.org/new-lib.min.js" integrity="x"></script>'
    with pytest.raises(ValueError, match="unknown CDN asset 'https://cdn.example.org/new-lib.min.js'"):
        asv_offline.rewrite_html(html)


def test_cost_report_recovers_synthetic_alpha_beta():
    alpha, beta = 4e-6, 5e-10
    floats = [2, 256, 4096, 65536]
    res = {"size": 8, "ops": {
        "raw_pingpong": {str(f): alpha + beta * 4 * f for f in floats},
        "raw_exchange_exponential": {str(f): 1e-3 for f in floats}}}
    model = cost_report.fit_from(res)
    assert model.alpha == pytest.approx(alpha, rel=1e-9)
    assert model.beta == pytest.approx(beta, rel=1e-9)
    rows = cost_report.rows(res)
    # 8 agents, exponential graph: offsets 1, 2, 4 -> 3 rounds (by hand).
    for r in rows:
        assert r["predicted"] == pytest.approx(3 * (alpha + beta * r["bytes"]), rel=1e-9)
    assert "alpha = 4 us" in cost_report.table(res)


def test_cost_report_needs_pingpong():
    with pytest.raises(ValueError, match="no raw_pingpong timings"):
        cost_report.fit_from({"size": 4, "ops": {}})


def test_topology_cost_tracks_match_hand_counts():
    from benchmarks.asv_bench.topology_cost import TopologyCost

    b = TopologyCost()
    b.setup("exponential", 64)
    assert b.track_rounds_per_step() == 6  # offsets 1, 2, 4, 8, 16, 32
    assert b.track_bytes_sent_per_agent() == 6 * 1000 * 4
    b.setup("one_peer_exponential", 64)
    assert b.track_rounds_per_step() == 1
    # Independent oracle for the consensus error: 10 dense mixing steps in float64.
    b.setup("ring", 8)
    W = b.topo.weights
    x0 = np.random.default_rng(1).standard_normal((8, 16))
    xk = np.linalg.matrix_power(W, 10) @ x0
    avg = x0.mean(axis=0)
    want = np.linalg.norm(xk - avg) / np.linalg.norm(x0 - avg)
    assert b.track_consensus_error_after_10_rounds("ring", 8) == pytest.approx(want, rel=1e-4)


def _ratio_oracle(num, den):
    q = np.asarray(num, float) / np.asarray(den, float)
    return float(q.min()), float(np.median(q))


def test_mixing_scaling_methods_agree_and_report():
    ms = pytest.importorskip("benchmarks.mixing_scaling")
    row = ms.measure(8, 64, repeats=3, loop=3)
    assert row["rounds"] == 3 and row["repeats"] == 3
    assert all(row[m] > 0 for m in ms.METHODS)
    for m in ms.METHODS:  # interleaved: every method has one sample per repetition
        assert len(row["samples"][m]) == 3
        assert row[m] == pytest.approx(float(np.median(row["samples"][m])))
        assert row["vs_sim"][m] == pytest.approx(_ratio_oracle(row["samples"][m],
                                                               row["samples"]["sim"]))
    lo, med = row["vs_sim"]["dense jnp"]
    assert f"({lo:.2g}, {med:.2g}x)" in ms.table([row]) and "| 8 | 64 | 3 |" in ms.table([row])


def _mpiexec():
    mpiexec = Path(sys.executable).parent / "mpiexec"
    if not mpiexec.exists():
        if shutil.which("mpiexec") is None:
            pytest.skip("mpiexec not installed")
        mpiexec = shutil.which("mpiexec")
    pytest.importorskip("mpi4py")
    return str(mpiexec)


def _run_module(args, timeout):
    from benchmarks._mpi import rank_env

    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=rank_env(2))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.mpi
def test_mpi_ranks_times_inside_two_ranks(tmp_path):
    out = tmp_path / "r.json"
    _run_module([_mpiexec(), "-n", "2", sys.executable, "-m", "benchmarks.mpi_ranks",
                 "--quick", "--samples", "3", "--floats", "2", "1024", "--json", str(out)], 300)
    res = json.loads(out.read_text())
    assert res["size"] == 2 and res["exponential_rounds"] == 1 and res["repeats"] == 3
    for op in ("raw_pingpong", "raw_sendrecv_ring", "raw_exchange_exponential", "raw_allreduce"):
        assert set(res["ops"][op]) == {"2", "1024"}
        assert all(0 < t < 1 for t in res["ops"][op].values())
    assert len(res["load_before"].split()) == 3 and len(res["load_after"].split()) == 3
    pairs = {"bluefog_neighbor_allreduce_loop / raw_exchange_exponential",
             "bluefog_allreduce_loop / raw_allreduce",
             "mpi4jax_sendrecv_loop / raw_sendrecv_ring"}
    if "bluefog_allreduce_loop" in res["ops"]:  # mpi4jax installed
        assert pairs <= set(res["ratios"])
    for key, per in res["ratios"].items():
        ours, raw = key.split(" / ")
        for d, r in per.items():
            want = _ratio_oracle(res["samples"][ours][d], res["samples"][raw][d])
            assert (r["min"], r["median"]) == pytest.approx(want)
            assert res["ops"][ours][d] == pytest.approx(np.median(res["samples"][ours][d]))


@pytest.mark.mpi
def test_mpi_exchange_quick_reports_per_repetition_ratios(tmp_path):
    pytest.importorskip("mpi4jax")
    out = tmp_path / "x.json"
    proc = _run_module([_mpiexec(), "-n", "2", sys.executable, "-m", "benchmarks.mpi_exchange",
                        "--quick", "--no-gloo", "--markdown", "--json", str(out)], 300)
    data = json.loads(out.read_text())
    assert data["meta"]["repeats"] == 2 and data["meta"]["load_before"]
    samples = {(r["method"], r["bytes"]): r["samples"] for r in data["results"]}
    assert {b for _, b in samples} == {1024, 65536}
    assert all(len(ts) == 2 for ts in samples.values())
    got = {(r["bytes"], r["vs"]): (r["min"], r["median"]) for r in data["ratios"]
           if r["method"] == "bluefog_loop"}
    for b in (1024, 65536):
        for base in ("raw_sendrecv_mix", "raw_sendrecv"):
            want = _ratio_oracle(samples[("bluefog_loop", b)], samples[(base, b)])
            assert got[(b, base)] == pytest.approx(want)
    assert "| 64 KiB |" in proc.stdout and "loop / raw+mix (min, med)" in proc.stdout


@pytest.mark.mpi
@pytest.mark.slow  # five mpiexec launches: ~1 min idle, 3 min at load 15 on 2 cores
def test_compare_quick_writes_every_table_with_ratios_and_load(tmp_path):
    """``compare --quick`` end to end on 2 ranks; the README copy gets all three tables,
    each with its load and per-repetition ratios."""
    _mpiexec()
    pytest.importorskip("mpi4jax")
    readme = tmp_path / "README.md"
    readme.write_text("".join(f"<!-- {m} -->\nold\n<!-- /{m} -->\n"
                              for m in ("perf-table", "cost-table", "mixing-table")))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.compare", "--quick", "--ranks", "2",
                           "--write-readme", "--readme", str(readme)], capture_output=True,
                          text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = readme.read_text()
    assert "old" not in text
    assert text.count("load average") >= 4
    assert "| simulator / no-communication, min / median of per-repetition ratios" in text
    assert "| one process per agent (one `mpiexec -n 2` launch per repetition" in text
    assert "n/a (" not in text  # the one-process-per-agent row was measured
    assert "| 1024 B | MpiComm.neighbor_allreduce, K per jitted loop |" in text
    assert "| MpiComm.allreduce in fori_loop / raw Allreduce |" in text
    assert "| 8 | 1,000 | 3 |" in text


#: The command-line programs of the benchmarks package (``python -m benchmarks.<name>``).
PROGRAMS = ["asv_offline", "compare", "cost_report", "dgd_ranks", "mixing_scaling",
            "many_agents", "mpi_exchange", "mpi_ranks", "multi_device", "pattern_compile", "small_step", "topology_table"]


def test_every_benchmark_program_runs_as_a_module_of_the_package(tmp_path):
    """`python -m benchmarks.<name> --help` from the repository root, as the README runs
    them: each imports its siblings relatively (no `sys.path` set-up) and prints its usage."""
    code = ("import runpy, sys\n"
            "for name in sys.argv[1:]:\n"
            "    sys.argv = [name, '--help']\n"
            "    try:\n"
            "        runpy.run_module('benchmarks.' + name, run_name='__main__')\n"
            "    except SystemExit as e:\n"
            "        print('EXIT', name, e.code, flush=True)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code, *PROGRAMS], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in PROGRAMS:
        assert f"EXIT {name} 0" in proc.stdout, (name, proc.stdout[-2000:], proc.stderr[-2000:])
    # the sibling helpers are reached as package modules, not by a path hack
    for name in PROGRAMS + ["_mpi", "_timing", "_topologies", "_workload"]:
        assert "sys.path.insert" not in (ROOT / "benchmarks" / f"{name}.py").read_text(), name
