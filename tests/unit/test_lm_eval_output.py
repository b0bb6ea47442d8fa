"""lm-eval-compatible output: ``results/<run>/lm_eval/`` read back by lm-eval's own code.

The run folders are fixtures written through the real RunStore (report_runs.make_run); the
values are test data, never a model's score.  tests/slow runs a real model through the CLI.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from report_runs import make_run, mc_sample

from harness.lm_eval_output import LM_EVAL_DIR, build_results, hash_string, lm_eval_sample, summary_table, write_lm_eval
from harness.store import RunStore

lm_eval_utils = pytest.importorskip("lm_eval.utils")

# every key lm-eval 0.4.13's simple_evaluate + EvaluationTracker put in a results file that we can
# fill from a stored run (pretty_env_info and the tokenizer strings need the live process)
LM_EVAL_KEYS = {"results", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples",
                "config", "git_hash", "date", "transformers_version", "lm_eval_version", "upper_git_hash",
                "task_hashes", "model_source", "model_name", "model_name_sanitized", "system_instruction",
                "system_instruction_sha", "fewshot_as_multiturn", "chat_template", "chat_template_sha",
                "total_evaluation_time_seconds"}


def _two_task_run(tmp_path: Path) -> Path:
    arc = [mc_sample(i, correct=i % 4 != 0) for i in range(8)]
    piqa = [mc_sample(i, correct=i % 2 == 0, choices=[" left", " right"]) for i in range(6)]
    return make_run(tmp_path, "run-a", {"arc_easy": arc, "piqa": piqa})


def _results_file(run_dir: Path) -> dict[str, Any]:
    files = list((run_dir / LM_EVAL_DIR).glob("results_*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text(encoding="utf-8"))


def test_make_table_prints_our_results_file(tmp_path: Path) -> None:
    run_dir = _two_task_run(tmp_path)
    path = write_lm_eval(RunStore(run_dir))
    data = _results_file(run_dir)
    assert LM_EVAL_KEYS <= set(data), LM_EVAL_KEYS - set(data)
    stored = json.loads((run_dir / "results.json").read_text())["results"]
    table = lm_eval_utils.make_table(data)
    for task in ("arc_easy", "piqa"):
        acc, se = stored[task]["acc,none"], stored[task]["acc_stderr,none"]
        row = next(line for line in table.splitlines() if line.startswith(f"|{task}"))
        cells = [c.strip() for c in row.split("|")[1:-1]]  # Tasks Version Filter n-shot Metric hib Value ± Stderr
        assert cells[2:6] == ["none", "0", "acc", "↑"] and cells[7] == "±", row
        assert float(cells[6]) == pytest.approx(acc, abs=5e-5) and float(cells[8]) == pytest.approx(se, abs=5e-5)
    assert data["n-samples"]["arc_easy"] == {"original": 8, "effective": 8}
    assert data["results"]["arc_easy"]["sample_len"] == 8 and data["results"]["arc_easy"]["alias"] == "arc_easy"
    assert data["config"]["model"] == "shakti" and data["config"]["model_args"] == {"model": "fixture-model"}
    assert data["git_hash"] == "c0ffeec" and isinstance(data["date"], float)
    # the file name is lm-eval's: tools find it and its date with lm-eval's own helpers
    rel = f"{run_dir.name}/{LM_EVAL_DIR}/{path.name}"
    assert lm_eval_utils.get_results_filenames([rel]) == [rel]
    assert "_" not in lm_eval_utils.get_file_datetime(path.name)


def test_samples_files_parse_as_lm_eval_writes_them(tmp_path: Path) -> None:
    run_dir = _two_task_run(tmp_path)
    write_lm_eval(RunStore(run_dir), log_samples=True)
    folder = run_dir / LM_EVAL_DIR
    names = sorted(p.name for p in folder.glob("samples_*.jsonl"))
    rels = [f"x/{n}" for n in names]
    assert lm_eval_utils.get_sample_results_filenames(rels) == rels
    assert sorted(lm_eval_utils.get_file_task_name(n) for n in names) == ["arc_easy", "piqa"]
    data = _results_file(run_dir)
    ours = RunStore(run_dir).read_samples("arc_easy")
    rows = [json.loads(line) for line in (folder / next(n for n in names if "arc_easy" in n)).read_text().splitlines()]
    assert len(rows) == len(ours)
    for row, rec in zip(rows, ours):
        assert row["doc_id"] == rec["doc_id"] and row["target"] == str(rec["target"])
        assert [a["arg_1"] for a in row["arguments"].values()] == rec["choices"]
        assert [float(r[0]) for r in row["filtered_resps"]] == rec["loglikelihoods"]
        assert row["acc"] == rec["acc"] and row["metrics"] == ["acc", "acc_norm"] and row["filter"] == "none"
        assert row["prompt_hash"] == hash_string(rec["prompt"])
    # task_hashes as EvaluationTracker.save_results_aggregated computes them from the sample rows
    assert data["task_hashes"]["arc_easy"] == hash_string(
        "".join(r["doc_hash"] + r["prompt_hash"] + r["target_hash"] for r in rows))
    # and the rows load as a dataset, which is what lm-eval sanitizes them for
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("json", data_files=str(folder / names[0]), split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == len(rows) and "gen_args_0" in ds[0]["arguments"]


def test_a_sample_row_is_what_lm_eval_own_tracker_writes(tmp_path: Path) -> None:
    """The same sample as lm-eval's evaluator logs it in memory, serialized by lm-eval's own
    EvaluationTracker, gives our row (all but ``doc``, which our records do not keep)."""
    from lm_eval.loggers.evaluation_tracker import EvaluationTracker

    rec = mc_sample(3, correct=True)
    ours = lm_eval_sample(rec, ["acc", "acc_norm"])
    in_memory = {
        "doc_id": rec["doc_id"], "doc": ours["doc"], "target": rec["target"],
        "arguments": [(rec["prompt"], c) for c in rec["choices"]],
        "resps": [[(ll, g)] for ll, g in zip(rec["loglikelihoods"], rec["is_greedy"])],
        "filtered_resps": [(ll, g) for ll, g in zip(rec["loglikelihoods"], rec["is_greedy"])],
        "filter": "none", "metrics": ["acc", "acc_norm"], "doc_hash": ours["doc_hash"],
        "prompt_hash": hash_string(rec["prompt"]), "target_hash": hash_string(str(rec["target"])),
        "acc": rec["acc"], "acc_norm": rec["acc_norm"],
    }
    tracker = EvaluationTracker(output_path=str(tmp_path / "lm"))
    tracker.general_config_tracker.model_name_sanitized = "m"
    tracker.date_id = "2026-01-01T00-00-00.000000"
    tracker.save_results_samples("t", [in_memory])
    (written,) = (tmp_path / "lm" / "m").glob("samples_t_*.jsonl")
    theirs = json.loads(written.read_text().splitlines()[0])
    assert theirs == json.loads(json.dumps(ours))


def test_groups_come_out_as_lm_eval_writes_them(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run-g")
    store.write_run({"status": "success", "run_id": "run-g", "args": {"model": "m", "limit": 6},
                     "started_at": "2026-01-01T00:00:00", "duration_s": 3.0})
    leaves = {"mmlu_astronomy": "stem", "mmlu_virology": "other", "mmlu_law": "humanities"}
    samples, subtasks = [], {}
    for j, (leaf, _) in enumerate(leaves.items()):
        recs = [mc_sample(i, correct=(i + j) % 2 == 0) for i in range(2)]
        for i, r in enumerate(recs):
            samples.append({**r, "doc_id": 10 * j + i, "subtask": leaf, "subtask_doc_id": i})
        acc = sum(r["acc"] for r in recs) / 2
        subtasks[leaf] = {"alias": leaf, "n": 2, "n_total": 100, "acc,none": acc, "acc_stderr,none": 0.5,
                          "chance": 0.25, "estimates": {}}
    subgroups = {f"mmlu_{g}": {"alias": g, "subtasks": [leaf for leaf, gg in leaves.items() if gg == g],
                               "acc,none": 0.5, "acc_stderr,none": 0.3} for g in ("stem", "other", "humanities")}
    store.write_samples("mmlu", samples)
    store.write_task_result("mmlu", {"acc,none": 0.5, "acc_stderr,none": 0.2},
                            {"n": 6, "n_total": 300, "version": 2, "num_fewshot": 0, "kind": "lm_eval",
                             "higher_is_better": {"acc": True}, "subtasks": subtasks, "subgroups": subgroups},
                            {"model": "m", "seed": 1})
    write_lm_eval(store, log_samples=True)
    data = _results_file(store.dir)
    assert set(data["groups"]) == {"mmlu", "mmlu_stem", "mmlu_other", "mmlu_humanities"}
    assert sorted(data["group_subtasks"]["mmlu"]) == ["mmlu_humanities", "mmlu_other", "mmlu_stem"]
    assert data["group_subtasks"]["mmlu_stem"] == ["mmlu_astronomy"]
    assert "chance,none" not in data["results"]["mmlu_law"]  # details are not metrics
    table = lm_eval_utils.make_table(data)
    assert "| - stem" in table and "|  - mmlu_astronomy" in table  # lm-eval's own hierarchy indentation
    assert "mmlu" in lm_eval_utils.make_table(data, "groups")
    names = sorted(lm_eval_utils.get_file_task_name(p.name) for p in (store.dir / LM_EVAL_DIR).glob("samples_*"))
    assert names == sorted(leaves)  # one samples file per leaf, as lm-eval writes a group


def test_only_tasks_with_metrics_and_missing_values(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run-h")
    store.write_run({"status": "partial", "run_id": "run-h", "args": {"model": "m"}})
    store.write_task_result("stored_gpu", {}, {"n": 0}, {"model": "m"})
    store.write_task_result("judged", {"relevancy,none": 0.7, "relevancy_stderr,none": None,
                                       "faith,none": None, "faith_stderr,none": None}, {"n": 4}, {"model": "m"})
    store.write_skipped("bbq", "error: no data", {"model": "m"})
    data = build_results(store)
    assert set(data["results"]) == {"judged"}
    assert data["results"]["judged"]["relevancy_stderr,none"] == "N/A" and "faith,none" not in data["results"]["judged"]
    assert "N/A" in lm_eval_utils.make_table(data)
    assert data["shakti_eval"]["skipped"] == {"bbq": "error: no data"}


def test_a_rewrite_replaces_the_earlier_set(tmp_path: Path) -> None:
    import datetime as dt

    run_dir = _two_task_run(tmp_path)
    write_lm_eval(RunStore(run_dir), log_samples=True, now=dt.datetime(2026, 1, 1, 10))
    write_lm_eval(RunStore(run_dir), log_samples=True, now=dt.datetime(2026, 1, 1, 11))
    files = sorted(p.name for p in (run_dir / LM_EVAL_DIR).iterdir())
    assert len(files) == 3 and all("T11-00-00" in f for f in files), files


def test_summary_table_lists_task_metric_value_stderr_and_n(tmp_path: Path) -> None:
    run_dir = _two_task_run(tmp_path)
    stored = RunStore(run_dir).read_results()
    lines = summary_table(stored).splitlines()
    assert lines[0].split("|")[1:-1] == [h.ljust(w) if i < 3 or i == 4 else h.rjust(w)
                                         for i, (h, w) in enumerate(zip(["Tasks", "Metric", "", "Value", "", "Stderr", "n"],
                                                                        [len(c) for c in lines[0].split("|")[1:-1]]))]
    arc = stored["results"]["arc_easy"]
    row = next(line for line in lines if line.startswith("|arc_easy"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells == ["arc_easy", "acc", "↑", f"{arc['acc,none']:.4f}", "±", f"{arc['acc_stderr,none']:.4f}", "8"]
    assert summary_table({"results": {}}) == ""
