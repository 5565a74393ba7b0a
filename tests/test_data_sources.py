"""Where the data lives (Parquet, CSV/TSV, dataset folders, hub ids in the local cache), real datasets' schemas,
--skip-invalid, --min-score-margin, and validate's counts and problems."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mlx_dpo.cli import main
from mlx_dpo.data.pairs import DataKeys, load_pairs
from mlx_dpo.data.prepare import prepare
from mlx_dpo.data.sources import DataSpec, cached_datasets, resolve, select_files
from mlx_dpo.errors import UsageError

import hf_datasets as hfd
from hf_datasets import A, U

UF = "HuggingFaceH4/ultrafeedback_binarized"


def validate_json(capsys, *args):
    code = main(["validate", *map(str, args), "--json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, json.loads(out), err


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache for this test (HF_HOME and HF_HUB_CACHE point into tmp)."""
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (home / "hub").mkdir(parents=True)
    return home / "hub"


@pytest.fixture
def uf_cached(hf_cache, tmp_path):
    """UltraFeedback (4 train_prefs, 2 test_prefs rows) as a snapshot in the fake cache."""
    folder = hfd.ultrafeedback_folder(tmp_path / "uf-repo")
    snap = hfd.add_to_hub_cache(hf_cache, UF, folder)
    return snap


# ======================================================================= Parquet files

def test_parquet_file_reads_like_jsonl(tmp_path):
    rows = [{"prompt": "q1", "chosen": "a", "rejected": "b"}, {"prompt": "q2", "chosen": "c", "rejected": "d"}]
    p = hfd.write_parquet(tmp_path / "d.parquet", rows)
    result = load_pairs(p)
    assert result.errors == [] and result.rows == 2
    assert [q.prompt for q in result.pairs] == [[{"role": "user", "content": "q1"}], [{"role": "user", "content": "q2"}]]
    assert [q.source for q in result.pairs] == [f"{p}:0", f"{p}:1"]  # the 0-based row index


def test_parquet_row_errors_name_file_and_row_index(tmp_path):
    rows = [{"prompt": "q", "chosen": "a", "rejected": "b"}] * 3
    rows[1] = {"prompt": "q", "chosen": "same", "rejected": "same"}
    p = hfd.write_parquet(tmp_path / "d.parquet", rows)
    assert [str(e) for e in load_pairs(p).errors] == [f"{p}:1: chosen,rejected: chosen and rejected are identical"]


def test_parquet_without_suffix_is_sniffed(tmp_path):
    p = hfd.write_parquet(tmp_path / "d.data", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    assert len(load_pairs(p).pairs) == 1


def test_corrupt_parquet_is_one_file_error_and_nothing_is_written(tmp_path, capsys, tiny_model):
    p = hfd.write_parquet(tmp_path / "d.parquet", [{"prompt": "q", "chosen": "a", "rejected": "b"}] * 50)
    p.write_bytes(p.read_bytes()[:-40])  # the footer is gone
    errors = load_pairs(p).errors
    assert len(errors) == 1 and str(errors[0]).startswith(f"{p}: file: not a readable Parquet file")
    assert (errors[0].source, errors[0].line, errors[0].field) == (str(p), None, "file")
    assert main(["train", "--model", tiny_model, "--data", str(p), "--output", str(tmp_path / "run"),
                 "--iters", "1", "--skip-invalid"]) == 2  # a broken file is not a bad row
    out, err = capsys.readouterr()
    assert f"{p}: file: not a readable Parquet file" in err and "Traceback" not in out + err
    assert not (tmp_path / "run").exists()


def test_jsonl_gz_is_decompressed(tmp_path):
    p = hfd.write_jsonl(tmp_path / "train.jsonl.gz", hfd.HH_ROWS, gz=True)
    assert len(load_pairs(p).pairs) == 2


# ======================================================================= CSV and TSV files

def write_csv(path: Path, header: list[str], rows: list[list], delimiter: str = ",") -> Path:
    """As Python's csv module (and pandas) write it: quoted where needed, CRLF line ends."""
    out = io.StringIO()
    w = csv.writer(out, delimiter=delimiter)
    w.writerow(header)
    w.writerows(rows)
    data = out.getvalue().encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def test_csv_rows_read_like_jsonl_and_are_named_by_the_line_they_start_on(tmp_path):
    p = write_csv(tmp_path / "d.csv", ["prompt", "chosen", "rejected"], [
        ["What is 7 x 8?", "56", "54"],                               # line 2: numbers stay text
        ["Write a haiku.", "Old pond\nfrog leaps in\nsplash", "No."],  # lines 3-5: a quoted answer over lines
        ["Same?", "x", "x"],                                          # line 6
    ])
    result = load_pairs(p)
    assert result.rows == 3 and [str(e) for e in result.errors] == [f"{p}:6: chosen,rejected: chosen and rejected are identical"]
    assert [q.source for q in result.pairs] == [f"{p}:2", f"{p}:3"]
    assert result.pairs[0].chosen == [{"role": "assistant", "content": "56"}]
    assert result.pairs[1].chosen[0]["content"] == "Old pond\nfrog leaps in\nsplash"


def test_tsv_and_gzipped_csv_are_read(tmp_path):
    rows = [["q1", "a", "b"], ["q2", "c", "d"]]
    for name, delimiter in (("d.tsv", "\t"), ("d.csv.gz", ","), ("d.tsv.gz", "\t")):
        p = write_csv(tmp_path / name, ["prompt", "chosen", "rejected"], rows, delimiter)
        result = load_pairs(p)
        assert result.errors == [] and [q.source for q in result.pairs] == [f"{p}:2", f"{p}:3"], name


def test_csv_columns_are_recognised_and_mapped_as_jsonl_keys(tmp_path):
    p = write_csv(tmp_path / "orca.csv", ["system", "question", "chosen", "rejected"],
                  [["Be brief.", "2+2?", "4", "5"]])
    pair = load_pairs(p).pairs[0]
    assert pair.prompt == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    q = write_csv(tmp_path / "mine.csv", ["query", "good", "bad"], [["2+2?", "4", "5"]])
    assert str(load_pairs(q).hints[0]).startswith(f"{q}:1: columns: unknown schema")  # the header is line 1
    mapped = load_pairs(q, DataKeys(prompt="query", chosen="good", rejected="bad"))
    assert mapped.errors == [] and mapped.pairs[0].chosen == [{"role": "assistant", "content": "4"}]


def test_a_csv_row_with_the_wrong_number_of_cells_is_that_rows_error_and_empty_rows_are_skipped(tmp_path):
    p = tmp_path / "d.csv"
    # line 1 blank, 2 the header, 3 a row, 4 blank, 5-6 a row of two cells, 7 an empty row, 8 a row
    p.write_text('\nprompt,chosen,rejected\nq1,a,b\n\nq2,"two\nlines"\n,,\nq3,e,f\n')
    result = load_pairs(p)
    assert [str(e) for e in result.errors] == [f"{p}:5: row: 2 cell(s), expected 3 (prompt, chosen, rejected)"]
    assert [q.source for q in result.pairs] == [f"{p}:3", f"{p}:8"] and result.rows == 3


def test_csv_thumbs_labels_read_as_booleans_and_a_bad_label_is_its_rows_error(tmp_path):
    p = write_csv(tmp_path / "thumbs.csv", ["prompt", "completion", "label"],
                  [["hi", "Hello!", "true"], ["hi", "Go away.", "False"], ["yo", "Hey.", "1"], ["yo", "Meh.", "maybe"]])
    result = load_pairs(p)
    assert [q.label for q in result.pairs] == [True, False, True]
    assert [str(e) for e in result.errors] == [f"{p}:5: label: expected true (desirable) or false (undesirable), got 'maybe'"]
    assert result.hints == []


def test_an_empty_or_unreadable_csv_is_one_file_error(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert [str(e) for e in load_pairs(empty).errors] == [f"{empty}:1: file: empty, expected a header line (prompt, chosen, rejected, "
                                        "...) and rows"]
    binary = tmp_path / "bad.csv"
    binary.write_bytes(b"prompt,chosen,rejected\nq,\xff\xfe,b\n")
    errors = load_pairs(binary).errors
    assert len(errors) == 1 and str(errors[0]).startswith(f"{binary}: file: not a readable CSV/TSV file (")


def test_a_file_of_another_format_is_one_line_naming_the_formats_read(tmp_path, capsys):
    """A CSV named .txt once gave one JSON error per row (2,101 lines for 2,100 rows)."""
    p = write_csv(tmp_path / "pairs.txt", ["prompt", "chosen", "rejected"], [[f"q{i}", "a", "b"] for i in range(2100)])
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"{p}:1: file: not JSON Lines (line 1 is not JSON); mlx-dpo reads ")
    assert ".csv, .tsv" in err[0] and ".parquet" in err[0]
    broken = tmp_path / "pairs.jsonl"  # a file that says it is JSON Lines still gets its errors line by line
    broken.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\nnot json\n')
    assert [str(e) for e in load_pairs(broken).errors] == [f"{broken}:2: json: invalid JSON: Expecting value (column 1)"]


def test_csv_files_make_a_dataset_folders_splits(tmp_path):
    (tmp_path / "ds" / "data").mkdir(parents=True)
    for split in ("train", "test"):
        write_csv(tmp_path / "ds" / "data" / f"{split}.csv", ["prompt", "chosen", "rejected"],
                  [[f"{split} q", "a", "b"]])
    result = load_pairs(DataSpec(str(tmp_path / "ds"), "test"))
    assert [q.prompt[0]["content"] for q in result.pairs] == ["test q"]


def test_iterate_reads_prompts_from_a_csv(tmp_path):
    from mlx_dpo.iterate.prompts import load_prompts

    p = write_csv(tmp_path / "prompts.csv", ["prompt", "system"], [["What is 2+2?", ""], ["Hi", "Be brief."]])
    prompts = load_prompts(p)
    assert [(q.messages, q.source) for q in prompts] == [
        ([{"role": "user", "content": "What is 2+2?"}], f"{p}:2"),
        ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], f"{p}:3")]


# ======================================================================= dataset folders

def test_folder_with_card_configs_picks_the_split(tmp_path, capsys):
    folder = hfd.ultrafeedback_folder(tmp_path / "uf")
    code, rep, _ = validate_json(capsys, folder, "--split", "train_prefs")
    assert code == 0 and rep["rows"] == 4 and rep["valid_pairs"] == 4
    assert rep["source"]["files"] == [str(folder / "data/train_prefs-00000-of-00001.parquet")]
    code, rep, _ = validate_json(capsys, folder, "--split", "test_prefs")
    assert code == 0 and rep["rows"] == 2


def test_folder_without_the_split_names_the_splits_and_the_flag(tmp_path, capsys):
    folder = hfd.ultrafeedback_folder(tmp_path / "uf")
    assert main(["validate", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"error: {folder}: no split 'train' in config 'default' (splits: train_prefs, test_prefs); " \
           "pass --split NAME" in err


@pytest.mark.parametrize("layout", [
    ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet", "data/test-00000-of-00001.parquet"],
    ["train/part-0.parquet", "train/part-1.parquet", "test/part-0.parquet"],
    ["train-00000-of-00002.jsonl", "train-00001-of-00002.jsonl", "test.jsonl"],
    ["data/train.jsonl", "data/train-extra.json", "data/test.jsonl"],  # train-extra is not a train shard
])
def test_conventional_folder_layouts(tmp_path, layout):
    root = tmp_path / "ds"
    (root / "data").mkdir(parents=True)
    rows = [{"prompt": f"q{i}", "chosen": "a", "rejected": "b"} for i in range(2)]
    for rel in layout:
        (hfd.write_parquet if rel.endswith(".parquet") else hfd.write_jsonl)(root / rel, rows)
    expected = [rel for rel in layout if "test" not in rel and "extra" not in rel]
    src = resolve(DataSpec(str(root)))
    assert [f.label for f in src.files] == [str(root / rel) for rel in sorted(expected)]
    assert len(load_pairs(str(root)).pairs) == 2 * len(expected)
    assert len(load_pairs(str(root), split="test").pairs) == 2


def test_subset_folder_and_gzipped_shards_like_hh_rlhf(tmp_path):
    root = tmp_path / "hh"
    (root / ".gitattributes").parent.mkdir(parents=True)
    (root / ".gitattributes").write_text("*.gz filter=lfs\n")
    for sub in ("harmless-base", "helpful-base"):
        hfd.write_jsonl(root / sub / "train.jsonl.gz", hfd.HH_ROWS, gz=True)
        hfd.write_jsonl(root / sub / "test.jsonl.gz", hfd.HH_ROWS[:1], gz=True)
    hfd.write_jsonl(root / "red-team-attempts/red_team_attempts.jsonl.gz", [{"transcript": "x"}], gz=True)
    assert len(load_pairs(str(root)).pairs) == 4  # both subsets' train files, not the red-team file
    harmless = load_pairs(str(root), subset="harmless-base", split="test")
    assert len(harmless.pairs) == 1 and harmless.schema.name == "hh"
    with pytest.raises(UsageError, match="no data files under nope/"):
        load_pairs(str(root), subset="nope")


def test_single_unnamed_file_is_the_train_split_like_orca(tmp_path):
    root = tmp_path / "orca"
    hfd.write_jsonl(root / "orca_rlhf.jsonl", hfd.ORCA_ROWS)
    (root / "README.md").write_text("# Orca DPO pairs\n")
    result = load_pairs(str(root))
    assert len(result.pairs) == 2 and result.schema.name == "orca"


def test_plain_folder_is_still_a_directory_error(tmp_path):
    hfd.write_jsonl(tmp_path / "mine.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    with pytest.raises(UsageError, match="is a directory"):
        load_pairs(tmp_path)


def test_select_files_from_card_configs_and_data_dir():
    card = "---\nconfigs:\n- config_name: en\n  data_dir: en\n- config_name: fr\n  data_files: fr/*.parquet\n---\n"
    files = ["en/train.parquet", "en/test.parquet", "fr/a.parquet", "README.md"]
    assert select_files("x", files, card, "train", "en") == ["en/train.parquet"]
    assert select_files("x", files, card, "train", "fr") == ["fr/a.parquet"]
    with pytest.raises(UsageError, match=r"several configs \(en, fr\); pass --data-config NAME"):
        select_files("x", files, card, "train", None)
    with pytest.raises(UsageError, match=r"no config 'de' \(configs: en, fr\)"):
        select_files("x", files, card, "train", "de")


# ======================================================================= hub ids and the local cache

def test_hub_id_resolves_in_the_local_cache_offline(uf_cached, capsys):
    code, rep, _ = validate_json(capsys, UF, "--split", "train_prefs")
    assert code == 0 and rep["rows"] == 4 and rep["valid_pairs"] == 4
    assert rep["file"] == UF
    assert rep["source"]["kind"] == "hub" and rep["source"]["revision"] == "a" * 40
    assert rep["source"]["files"] == [f"{UF}/data/train_prefs-00000-of-00001.parquet"]
    assert rep["schema"]["name"] == "ultrafeedback"
    assert cached_datasets() == [UF]


def test_hub_id_mapping_line_in_the_human_report(uf_cached, capsys):
    assert main(["validate", UF, "--split", "train_prefs"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"data: {UF}@aaaaaaa (local cache), split train_prefs: data/train_prefs-00000-of-00001.parquet"
    assert out[1].startswith(f"data: {UF}: schema UltraFeedback (HuggingFaceH4/ultrafeedback_binarized): prompt = ")
    assert "ignored: prompt, prompt_id, messages" in out[1]
    assert out[2] == f"{UF}: 4 rows, 4 valid pairs (implicit 4), 0 error(s)"


def test_hub_row_errors_name_the_repo_file_and_row(hf_cache, tmp_path, capsys):
    folder = hfd.ultrafeedback_folder(tmp_path / "uf")
    rows = hfd.ultrafeedback_rows(3)
    rows[2]["rejected"] = rows[2]["chosen"]
    hfd.write_parquet(folder / "data/train_prefs-00000-of-00001.parquet", rows)
    hfd.add_to_hub_cache(hf_cache, UF, folder)
    code, rep, err = validate_json(capsys, UF, "--split", "train_prefs")
    assert code == 2
    line = f"{UF}/data/train_prefs-00000-of-00001.parquet:2: chosen,rejected: chosen and rejected are identical"
    assert err.splitlines() == [line]
    assert rep["problems"] == [{"file": f"{UF}/data/train_prefs-00000-of-00001.parquet", "line": 2,
                                "field": "chosen,rejected", "message": "chosen and rejected are identical",
                                "fix": None}]


def test_hub_revision_picks_the_snapshot(hf_cache, tmp_path, capsys):
    old = hfd.ultrafeedback_folder(tmp_path / "old", train=2)
    new = hfd.ultrafeedback_folder(tmp_path / "new", train=5)
    hfd.add_to_hub_cache(hf_cache, UF, old, commit="1" * 40, ref=None)
    hfd.add_to_hub_cache(hf_cache, UF, new, commit="2" * 40)
    assert validate_json(capsys, UF, "--split", "train_prefs")[1]["rows"] == 5
    assert validate_json(capsys, UF, "--split", "train_prefs", "--data-revision", "1" * 40)[1]["rows"] == 2
    assert main(["validate", UF, "--split", "train_prefs", "--data-revision", "v9"]) == 2
    assert "not in the local Hugging Face cache" in capsys.readouterr().err


def test_the_apps_inspection_reads_the_split_revision_and_skip_choice(hf_cache, tmp_path):
    """data.preview.inspect_data (the Data tab's job) takes the CLI's source choices."""
    from mlx_dpo.data.preview import inspect_data

    hfd.add_to_hub_cache(hf_cache, UF, hfd.ultrafeedback_folder(tmp_path / "old", train=2), commit="1" * 40, ref=None)
    hfd.add_to_hub_cache(hf_cache, UF, hfd.ultrafeedback_folder(tmp_path / "new", train=5), commit="2" * 40)
    r = inspect_data(UF, split="test_prefs")
    assert r["report"]["rows"] == 2 and r["report"]["source"]["split"] == "test_prefs" and r["fatal"] == 0
    assert any("UltraFeedback" in line for line in r["mapping"]) and len(r["preview"]) == 2
    assert inspect_data(UF, split="train_prefs", revision="1" * 40)["report"]["rows"] == 2
    with pytest.raises(UsageError, match="not in the local Hugging Face cache"):
        inspect_data(UF, split="train_prefs", revision="v9")
    bad = hfd.write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "a", "chosen": "x", "rejected": "y"},
                                                   {"prompt": "b", "chosen": "z", "rejected": "z"}])
    r = inspect_data(str(bad), skip_invalid=True)
    assert r["report"]["skipped"] == 1 and r["problems"][0]["line"] == 2 and r["report"]["valid_pairs"] == 1
    assert "skipped" not in inspect_data(str(bad))["report"]


def test_hub_id_not_cached_offline_is_one_line(hf_cache, capsys):
    assert main(["validate", "nobody/nothing"]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: nobody/nothing: no such file or folder, and not in the "
                                                   "local Hugging Face cache")
    assert "offline" in lines[0] and "Traceback" not in out + err


def test_missing_relative_file_is_not_taken_for_a_hub_id(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=r"^data/train.jsonl: no such file$"):
        load_pairs("data/train.jsonl")


def test_online_downloads_only_the_split(monkeypatch, hf_cache, tmp_path):
    """Online: list the repo, fetch README.md, then snapshot_download only the split's files."""
    import huggingface_hub

    folder = hfd.ultrafeedback_folder(tmp_path / "uf")
    calls = {}

    class Api:
        def list_repo_files(self, repo_id, repo_type=None, revision=None):
            calls["list"] = (repo_id, repo_type, revision)
            return ["README.md", ".gitattributes", "data/train_prefs-00000-of-00001.parquet",
                    "data/test_prefs-00000-of-00001.parquet"]

    def hf_hub_download(repo_id, filename, repo_type=None, revision=None, cache_dir=None):
        return str(folder / filename)

    def snapshot_download(repo_id, repo_type=None, revision=None, cache_dir=None, allow_patterns=None):
        calls["snapshot"] = (repo_type, sorted(allow_patterns), cache_dir)
        return str(hfd.add_to_hub_cache(Path(cache_dir), repo_id, folder, commit="c" * 40))

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    src = resolve(DataSpec(UF, "test_prefs"))
    assert calls["list"] == (UF, "dataset", None)
    assert calls["snapshot"] == ("dataset", ["README.md", "data/test_prefs-00000-of-00001.parquet"], str(hf_cache))
    assert src.origin == "downloaded" and [f.label for f in src.files] == [f"{UF}/data/test_prefs-00000-of-00001.parquet"]


def test_online_failure_falls_back_to_the_cache(monkeypatch, uf_cached):
    import huggingface_hub

    class Api:
        def list_repo_files(self, *a, **k):
            raise ConnectionError("Max retries exceeded")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    src = resolve(DataSpec(UF, "train_prefs"))
    assert src.origin == "local cache" and len(src.files) == 1


# ======================================================================= schemas of real datasets

@pytest.mark.parametrize("name, rows, schema, prompt, chosen", [
    ("ultrafeedback", hfd.ultrafeedback_rows(2), "ultrafeedback",
     [U("How can I develop a habit of drawing daily? (0)")], "Start small"),
    ("capybara", hfd.capybara_rows(), "capybara",
     [U("What is the capital of France?"), A("Paris."), U("And its population?")], "About 2.1 million"),
    ("orca", hfd.ORCA_ROWS, "orca",
     [U("You will be given a definition of a task first. Translate 'hello' to French.")], "Bonjour."),
    ("hh", hfd.HH_ROWS, "hh", [U("What are some cuss words in english?")], "I'd rather not"),
    ("trl-implicit", hfd.TRL_IMPLICIT_ROWS, "implicit", [U("Name a primary color.")], "Red."),
    ("instruction", hfd.INSTRUCTION_ROWS, "instruction",
     [U("Summarise the text.\n\nThe cat sat on the mat all day.")], "A cat spent"),
])
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_real_schemas_are_recognised_without_flags(tmp_path, name, rows, schema, prompt, chosen, fmt):
    p = (hfd.write_parquet if fmt == "parquet" else hfd.write_jsonl)(tmp_path / f"{name}.{fmt}", rows)
    result = load_pairs(p)
    assert result.errors == [], result.errors
    assert result.schema.name == schema
    first = result.pairs[0]
    for m in first.prompt:  # Parquet structs may carry the keys in another order
        m.pop("name", None)
    assert first.prompt == [{"role": m["role"], "content": m["content"]} for m in prompt]
    assert first.chosen[-1]["content"].startswith(chosen) and first.chosen[-1]["role"] == "assistant"
    assert result.schema.describe().startswith("schema ")


def _sharegpt_rows(answers_as_lists: bool) -> list[dict]:
    """LLaMA-Factory / Axolotl ShareGPT preference rows (chosen/rejected a from/value object, or a list)."""
    def turn(who, text):
        return [{"from": who, "value": text}] if answers_as_lists else {"from": who, "value": text}
    return [
        {"conversations": [{"from": "human", "value": "Hi!"}, {"from": "gpt", "value": "Hello!"},
                           {"from": "human", "value": "Capital of France?"}],
         "chosen": turn("gpt", "Paris."), "rejected": turn("gpt", "Lyon."), "system": "Be brief."},
        {"conversations": [{"from": "system", "value": "Answer in one word."}, {"from": "user", "value": "2+2?"}],
         "chosen": turn("assistant", "Four."), "rejected": turn("gpt", "Five.")},
    ]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
@pytest.mark.parametrize("answers_as_lists", [False, True], ids=["answer-object", "answer-list"])
def test_sharegpt_rows_are_recognised_and_their_earlier_turns_are_the_prompt(tmp_path, fmt, answers_as_lists):
    rows = _sharegpt_rows(answers_as_lists)
    p = (hfd.write_parquet if fmt == "parquet" else hfd.write_jsonl)(tmp_path / f"sg.{fmt}", rows)
    result = load_pairs(p)
    assert result.errors == [] and result.schema.name == "sharegpt"
    first, second = result.pairs
    assert first.prompt == [{"role": "system", "content": "Be brief."}, U("Hi!"), A("Hello!"), U("Capital of France?")]
    assert first.chosen == [A("Paris.")] and first.rejected == [A("Lyon.")]
    assert second.prompt == [{"role": "system", "content": "Answer in one word."}, U("2+2?")]
    assert second.chosen == [A("Four.")] and second.rejected == [A("Five.")]
    assert result.schema.describe().startswith("schema ShareGPT (LLaMA-Factory, Axolotl): prompt = the conversations "
                                               "turns (from/value")


def test_sharegpt_mapping_line_is_printed_and_a_bad_turn_names_from_or_value(tmp_path, capsys):
    rows = _sharegpt_rows(False)
    rows[1]["conversations"][1] = {"from": "tool", "value": "x"}
    rows.append({**rows[0], "chosen": {"from": "gpt"}})
    p = hfd.write_jsonl(tmp_path / "sg.jsonl", rows)
    assert [str(e) for e in load_pairs(p).errors] == [
        f"{p}:2: conversations[1].from: unknown role 'tool' (expected human/user, gpt/assistant or system)",
        f"{p}:3: chosen.value: missing"]
    assert main(["validate", str(p), "--skip-invalid"]) == 0
    assert f"data: {p}: schema ShareGPT (LLaMA-Factory, Axolotl): prompt = " in capsys.readouterr().out


HELPSTEER2_ROWS = [  # nvidia/HelpSteer2 preference: negative strength = response_1 is better
    {"split": "train", "prompt": "Name a colour.", "response_1": "Blue.", "response_2": "Seven.", "preference_strength": -2},
    {"split": "train", "prompt": "2+2?", "response_1": "Five.", "response_2": "Four.", "preference_strength": 3},
    {"split": "train", "prompt": "Hi", "response_1": "Hello.", "response_2": "Hey.", "preference_strength": 0},
]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_helpsteer2_pairwise_rows_are_ordered_by_the_strengths_sign_and_ties_counted(tmp_path, capsys, fmt):
    if fmt == "csv":
        p = tmp_path / "hs2.csv"
        with open(p, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(HELPSTEER2_ROWS[0]))
            w.writeheader()
            w.writerows(HELPSTEER2_ROWS)
    else:
        p = hfd.write_jsonl(tmp_path / "hs2.jsonl", HELPSTEER2_ROWS)
    result = load_pairs(p)
    assert result.errors == [] and result.schema.name == "helpsteer2" and result.ties == 1
    assert [(x.chosen[0]["content"], x.rejected[0]["content"]) for x in result.pairs] == [("Blue.", "Seven."),
                                                                                         ("Four.", "Five.")]
    assert "0: a tie, skipped and counted" in result.schema.describe()
    code, rep, _ = validate_json(capsys, p)
    assert code == 0 and rep["ties"] == 1 and rep["valid_pairs"] == 2 and rep["schema"]["name"] == "helpsteer2"


def test_helpsteer2_mapped_with_key_flags_is_refused_by_name(tmp_path, capsys):
    p = hfd.write_jsonl(tmp_path / "hs2.jsonl", HELPSTEER2_ROWS)
    assert main(["validate", str(p), "--chosen-key", "response_1", "--rejected-key", "response_2"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "a HelpSteer2 pairwise file" in line and "would train some rows backwards" in line


def test_helpsteer2_bad_strength_is_that_rows_error(tmp_path):
    rows = [dict(HELPSTEER2_ROWS[0]), {**HELPSTEER2_ROWS[1], "preference_strength": "much better"}]
    p = hfd.write_jsonl(tmp_path / "hs2.jsonl", rows)
    assert [str(e) for e in load_pairs(p).errors] == [
        f"{p}:2: preference_strength: expected a number (negative: response_1 preferred, positive: response_2), "
        "got a string"]


def test_orca_system_prompt_is_kept_and_empty_system_dropped(tmp_path):
    pairs = load_pairs(hfd.write_jsonl(tmp_path / "orca.jsonl", hfd.ORCA_ROWS)).pairs
    assert pairs[0].prompt[0]["role"] == "user"
    assert pairs[1].prompt[0] == {"role": "system", "content": hfd.ORCA_ROWS[1]["system"]}


def test_ultrafeedback_bad_row_is_reported_as_the_conversation_problem(tmp_path):
    rows = hfd.ultrafeedback_rows(2)
    rows[1]["rejected"] = [U("q")]  # no answer at all
    p = hfd.write_jsonl(tmp_path / "uf.jsonl", rows)
    assert [str(e) for e in load_pairs(p).errors] == [
        f"{p}:2: rejected: missing assistant turn: the conversation must end with the answer"]


def test_unknown_schema_lists_columns_and_the_flags(tmp_path, capsys):
    p = hfd.write_jsonl(tmp_path / "x.jsonl", [{"query": "q", "response_good": "a", "response_bad": "b", "sys": "s"}])
    result = load_pairs(p)
    assert [str(e) for e in result.errors] == [f"{p}:1: chosen: missing (expected a string or a list of messages)"]  # one per row
    assert str(result.hints[0]) == (f"{p}:1: columns: unknown schema: no chosen/rejected columns; columns found: query, "
                         "response_good, response_bad, sys; map them with --prompt-key query --chosen-key "
                         "response_good --rejected-key response_bad --system-key sys (--prompt-key, --chosen-key, "
                         "--rejected-key, --system-key)")
    assert main(["validate", str(p)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == str(result.hints[0])
    code = main(["validate", str(p), "--prompt-key", "query", "--chosen-key", "response_good",
                 "--rejected-key", "response_bad", "--system-key", "sys"])
    out = capsys.readouterr().out
    assert code == 0 and "schema from flags: prompt = query" in out


def test_flags_win_over_recognition(tmp_path):
    rows = [{"question": "q", "prompt": "other", "chosen": "a", "rejected": "b"}]
    p = hfd.write_jsonl(tmp_path / "d.jsonl", rows)
    pair = load_pairs(p, DataKeys(prompt="question")).pairs[0]
    assert pair.prompt == [{"role": "user", "content": "q"}]


# ======================================================================= --min-score-margin

def test_min_score_margin_drops_close_pairs(tmp_path, capsys):
    rows = hfd.ultrafeedback_rows(6)  # margins: 2.5, 2.5, -1.0, 2.5, 1.5, 0.5
    margins = [r["score_chosen"] - r["score_rejected"] for r in rows]
    p = hfd.write_parquet(tmp_path / "uf.parquet", rows)
    result = load_pairs(p, min_score_margin=1.0)
    assert len(result.pairs) == sum(m >= 1.0 for m in margins) and result.filtered == sum(m < 1.0 for m in margins)
    code, rep, _ = validate_json(capsys, p, "--min-score-margin", "1")
    assert code == 0 and rep["filtered"] == result.filtered and rep["valid_pairs"] == len(result.pairs)


def test_min_score_margin_without_score_columns_is_a_usage_error(tmp_path, capsys):
    p = hfd.write_jsonl(tmp_path / "orca.jsonl", hfd.ORCA_ROWS)
    assert main(["validate", str(p), "--min-score-margin", "1"]) == 2
    assert "--min-score-margin needs score columns" in capsys.readouterr().err


def test_hyphenated_argilla_ratings_are_score_columns(tmp_path, capsys):
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}", "chosen-rating": 5,
             "rejected-rating": r, "chosen-model": "m"} for i, r in enumerate((1, 4.5, 2))]
    p = hfd.write_jsonl(tmp_path / "argilla.jsonl", rows)
    result = load_pairs(p, min_score_margin=1.0)
    assert result.schema.scores == ("chosen-rating", "rejected-rating")
    assert [x.source for x in result.pairs] == [f"{p}:1", f"{p}:3"] and result.filtered == 1


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_score_keys_name_the_score_columns_and_keep_the_layouts_recognition(tmp_path, capsys, fmt):
    rows = [{"question": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}", "win": w, "loss": 1}
            for i, w in enumerate((3, 1.5, 9))]
    if fmt == "csv":
        p = tmp_path / "d.csv"
        with open(p, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        p = hfd.write_jsonl(tmp_path / "d.jsonl", rows)
    result = load_pairs(p, DataKeys(scores=("win", "loss")), min_score_margin=1.0)
    assert result.errors == [] and result.schema.name == "orca" and result.schema.scores == ("win", "loss")
    assert len(result.pairs) == 2 and result.filtered == 1
    code, rep, _ = validate_json(capsys, p, "--score-keys", "win,loss", "--min-score-margin", "1")
    assert code == 0 and rep["filtered"] == 1 and rep["valid_pairs"] == 2


def test_bad_score_keys_are_one_line_naming_the_flag(tmp_path, capsys):
    p = hfd.write_jsonl(tmp_path / "d.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    assert main(["validate", str(p), "--score-keys", "win"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "score_keys: expected two column names as CHOSEN,REJECTED, got 'win'" in line and "--score-keys" in line
    assert main(["validate", str(p), "--score-keys", "win,loss", "--min-score-margin", "1"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.endswith(f"{p}: --score-keys names no such column: win, loss; columns found: prompt, chosen, rejected")


# ======================================================================= --skip-invalid and validate's counts

ROWS_WITH_TWO_BAD = [{"prompt": f"Please describe {t}.", "chosen": f"Sure! {t} is lovely.", "rejected": "No."}
                     for t in ("the sea", "a cat", "bread", "rain", "the moon", "music")]
ROWS_WITH_TWO_BAD[1] = {"prompt": "q", "chosen": "x"}
ROWS_WITH_TWO_BAD[4] = '{"prompt": "broken'


def _bad_file(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in ROWS_WITH_TWO_BAD))
    return p


def test_validate_json_carries_the_problems(tmp_path, capsys):
    p = _bad_file(tmp_path)
    code, rep, err = validate_json(capsys, p)
    assert code == 2 and (rep["rows"], rep["valid_pairs"], rep["errors"]) == (6, 4, 2)
    assert [(q["file"], q["line"], q["field"]) for q in rep["problems"]] == [(str(p), 2, "rejected"), (str(p), 5, "json")]
    assert rep["problems"][0]["message"] == "missing (expected a string or a list of messages)"


def test_validate_skip_invalid_exits_0_and_says_what_would_train(tmp_path, capsys, tiny_model):
    p = _bad_file(tmp_path)
    assert main(["validate", str(p), "--model", tiny_model, "--skip-invalid"]) == 0
    out = capsys.readouterr().out
    assert "6 rows, 4 valid pairs (explicit 4), 2 error(s)" in out
    assert "2 invalid row(s) left out (--skip-invalid)" in out and "4 pairs would train" in out
    assert main(["validate", str(p), "--model", tiny_model]) == 2
    out = capsys.readouterr().out
    assert "pass --skip-invalid" in out and "4 pairs would train with --skip-invalid" in out


def test_train_refuses_by_default_with_a_hint(tmp_path, capsys, tiny_model):
    p = _bad_file(tmp_path)
    assert main(["train", "--model", tiny_model, "--data", str(p), "--output", str(tmp_path / "run"),
                 "--iters", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{p}:2: rejected: missing" in err and "pass --skip-invalid to train on the 4 valid pair(s)" in err
    assert not (tmp_path / "run").exists()


def test_train_skip_invalid_trains_on_the_valid_rows_and_lists_the_others(tmp_path, capsys, tiny_model):
    p = _bad_file(tmp_path)
    run = tmp_path / "run"
    assert main(["train", "--model", tiny_model, "--data", str(p), "--output", str(run), "--iters", "1",
                 "--batch-size", "2", "--skip-invalid", "--loss", "ipo", "--label-smoothing", "0.1"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {p}: skipped 2 invalid row(s) of 6 (--skip-invalid); 4 pairs kept:" in err
    assert f"  {p}:2: rejected: missing (expected a string or a list of messages)" in err
    assert "4 training pairs" in err
    assert err.count("--label-smoothing 0.1 has no effect with --loss ipo") == 1
    skipped = [json.loads(line) for line in (run / "skipped.jsonl").read_text().splitlines()]
    assert [(s["source"], s["file"], s["line"], s["field"]) for s in skipped] == [
        (str(p), str(p), 2, "rejected"), (str(p), str(p), 5, "json")]
    assert (run / "adapters.safetensors").exists()


def _model_whose_template_fails_on(word, tiny_model, tmp_path) -> str:
    dst = tmp_path / "model"
    shutil.copytree(tiny_model, dst)
    cfg_path = dst / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = ("{% for m in messages %}{% if '" + word + "' in m['content'] %}"
                            "{{ raise_exception('cannot render this') }}{% endif %}"
                            "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
                            "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    cfg_path.write_text(json.dumps(cfg))
    return str(dst)


def test_validate_counts_agree_when_rendering_fails(tmp_path, capsys, tiny_model):
    """Rows that fail the chat template are not valid pairs: the counts and `would train` agree."""
    model = _model_whose_template_fails_on("FAIL", tiny_model, tmp_path)
    rows = [{"prompt": f"FAIL {i}", "chosen": "a", "rejected": "b"} for i in range(3)]
    rows.append({"prompt": "plain", "chosen": "a", "rejected": "b"})
    p = hfd.write_jsonl(tmp_path / "d.jsonl", rows)
    code, rep, err = validate_json(capsys, p, "--model", model)
    assert code == 2
    assert (rep["rows"], rep["valid_pairs"], rep["errors"], rep["trainable_pairs"]) == (4, 1, 3, 1)
    assert rep["formats"] == {"explicit": 1}
    assert [q["field"] for q in rep["problems"]] == ["template"] * 3
    assert main(["validate", str(p), "--model", model]) == 2
    out = capsys.readouterr().out
    assert f"{p}: 4 rows, 1 valid pairs (explicit 1), 3 error(s)" in out


def test_problems_are_records_with_source_line_field_message_and_print_as_before(tmp_path):
    from mlx_dpo.errors import Problem

    p = tmp_path / "x.jsonl"
    p.write_text('{"prompt": "q", "chosen": [{"content": "a"}], "rejected": "b"}\nnot json\n', encoding="utf-8")
    result = load_pairs(p)
    assert [(e.source, e.line, e.field) for e in result.errors] == [(str(p), 1, "chosen[0].role"), (str(p), 2, "json")]
    assert str(result.errors[0]) == f"{p}:1: chosen[0].role: missing"
    assert Problem.from_dict(result.errors[1].as_dict()) == result.errors[1]
    fixed = Problem("f.jsonl", "all rows are invalid", None, None, fix="pass --skip-invalid")
    assert str(fixed) == "f.jsonl: all rows are invalid; pass --skip-invalid"
    assert Problem.at_row("ORG/NAME/t.parquet:7", "template", "x") == Problem("ORG/NAME/t.parquet", "x", 7, "template")


# ======================================================================= found on the way

def test_label_smoothing_is_named_cdpo_and_flagged_where_ignored():
    from mlx_dpo.config import TrainConfig
    from mlx_dpo.train.losses import Loss

    help_ = next(f for f in __import__("dataclasses").fields(TrainConfig) if f.name == "label_smoothing").metadata["help"]
    # cDPO is not robust DPO: robust is a loss of its own, which reads the same setting as its flip rate
    assert "cDPO" in help_ and "the flip rate of robust" in help_
    assert Loss("sigmoid", label_smoothing=0.1).ignored_settings() == []
    assert Loss("simpo", label_smoothing=0.1).ignored_settings() == []
    assert Loss("hinge", label_smoothing=0.0).ignored_settings() == []
    assert "no effect with --loss hinge" in Loss("hinge", label_smoothing=0.1).ignored_settings()[0]


def test_export_names_the_base_by_absolute_path_or_hub_id(tmp_path, monkeypatch):
    from mlx_dpo.export.card import base_model_ref

    (tmp_path / "models/qwen25").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert base_model_ref("models/qwen25") == str(tmp_path / "models/qwen25")
    assert base_model_ref("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    snap = tmp_path / "hub/models--Qwen--Qwen2.5-0.5B-Instruct/snapshots/abc123"
    snap.mkdir(parents=True)
    assert base_model_ref(str(snap)) == "Qwen/Qwen2.5-0.5B-Instruct"


def test_model_card_front_matter_holds_only_hub_ids(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from mlx_dpo.export.card import model_card

    (tmp_path / "models/m").mkdir(parents=True)
    (tmp_path / "adapter").mkdir()
    monkeypatch.chdir(tmp_path)
    adapter = {"fine_tune_type": "lora", "num_layers": 2, "lora_parameters": {"rank": 8, "scale": 20.0}}
    cfg = SimpleNamespace(model="models/m", format="peft", output=str(tmp_path / "out"), adapter=str(tmp_path / "adapter"),
                          quantize=None)
    card = model_card(cfg, {"model_type": "llama"}, adapter, {"data": UF, "split": "train_prefs"}, "float32")
    front = card.split("---")[1]
    assert "base_model" not in front and f"datasets: [{UF}]" in front
    assert str(tmp_path / "models/m") in card and f"`{UF}` (split train_prefs)" in card
    cfg.model = "Qwen/Qwen2.5-0.5B-Instruct"
    assert "base_model: Qwen/Qwen2.5-0.5B-Instruct" in model_card(cfg, {}, adapter, {"data": "x.jsonl"}, "float32")


# ======================================================================= the tokenized-pairs cache

def test_tokenized_pairs_are_cached_by_content_tokenizer_and_limits(tmp_path, monkeypatch, tiny_model):
    from mlx_dpo.data import cache, prepare as prep
    from mlx_dpo.model.load import load_tokenizer_only

    monkeypatch.setattr(cache, "MIN_PAIRS", 0)
    calls = []
    real = prep.render_pairs
    monkeypatch.setattr(prep, "render_pairs", lambda *a, **k: calls.append(1) or real(*a, **k))
    tok = load_tokenizer_only(tiny_model)
    p = hfd.write_parquet(tmp_path / "uf.parquet", hfd.ultrafeedback_rows(5))
    logs = []
    first = prepare(p, DataKeys(), tok, 64, 32, log=logs.append)
    again = prepare(p, DataKeys(), tok, 64, 32, log=logs.append)
    assert len(calls) == 1 and any("from the cache" in line for line in logs)
    assert again.pairs == first.pairs  # TokenizedPair compares its id arrays element by element
    assert all(q.prompt.dtype == np.int32 for q in again.pairs)
    assert again.report() == first.report()
    prepare(p, DataKeys(), tok, 48, 24)  # other limits: tokenized again
    assert len(calls) == 2
    hfd.write_parquet(p, hfd.ultrafeedback_rows(5, offset=1))  # other content
    prepare(p, DataKeys(), tok, 64, 32)
    assert len(calls) == 3
    for f in (Path(os.environ["MLX_DPO_CACHE"]) / "data").iterdir():
        f.write_bytes(b"torn")  # a broken cache entry is tokenized again, not an error
    assert len(prepare(p, DataKeys(), tok, 64, 32).pairs) == 5 and len(calls) == 4
