"""Where the pairs live: a file, a dataset folder, or a Hugging Face hub dataset id — resolved to data files.

    a file          .jsonl / .json (JSONL or a JSON list), .parquet, .csv / .tsv (a header line, then rows;
                    tables.py), or gzipped (.jsonl.gz, .csv.gz)
    a folder        laid out like a hub dataset repository: the split's files are found the way
                    `datasets` finds them — the `configs:` block of README.md when there is one, else
                    `data/<split>-*.parquet`, `<split>.jsonl`, `<split>/*.parquet`, `<subset>/<split>.jsonl.gz`, ...;
                    a repository with a single unnamed data file (e.g. Intel/orca_dpo_pairs) is its train split
    ORG/NAME        a hub dataset: looked up in the local Hugging Face cache (hub/datasets--ORG--NAME/
                    snapshots/REV/..., the layout huggingface_hub writes) when offline (HF_HUB_OFFLINE=1)
                    or unreachable; online, only the split's files are downloaded (snapshot_download)

`split` (default train), `subset` (a config name of README.md's `configs:`, or a sub-folder) and `revision`
(hub: branch, tag or commit) pick the files. Every problem is a UsageError naming the source, with the
flag that fixes it where there is one.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError, first_line

PARQUET = ".parquet"
DATA_SUFFIXES = (".parquet", ".jsonl", ".json", ".jsonl.gz", ".json.gz", ".ndjson", ".csv", ".tsv", ".csv.gz",
                 ".tsv.gz")
FORMATS_READ = ("mlx-dpo reads JSON Lines or a JSON list (.jsonl, .json), Parquet (.parquet) and CSV/TSV with a header "
                "line (.csv, .tsv), each but Parquet also gzipped (.gz), a dataset folder or a hub dataset id ORG/NAME")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_SHARD = re.compile(r"[-_.]\d{5}-of-\d{5}.*$")
_SPLIT_NAME_EXTRA = re.compile(r"^(?:[-_.][0-9].*)?$")  # train.jsonl, train-00000-of-00002.parquet, train_0.json


@dataclass(frozen=True)
class DataSpec:
    """What the user typed (`--data`), and which part of it to read."""
    path: str
    split: str = "train"
    subset: str | None = None     # --data-config
    revision: str | None = None   # --data-revision


@dataclass
class SourceFile:
    path: Path    # the local file that is read
    label: str    # how error messages name it (the path; for a hub dataset ORG/NAME/<file in the repo>)

    @property
    def parquet(self) -> bool:
        return self.path.name.endswith(PARQUET)


@dataclass
class Source:
    spec: DataSpec
    kind: str                     # "file", "folder" or "hub"
    files: list[SourceFile] = field(default_factory=list)
    root: Path | None = None      # folder / snapshot the files are in
    revision: str | None = None   # hub: the commit the snapshot is at
    origin: str = ""              # hub: "local cache" or "downloaded"

    def describe(self) -> str:
        """One line: what was read, e.g. `ORG/NAME@1a2b3c4 (local cache), split train_prefs: data/x.parquet`."""
        s = self.spec
        if self.kind == "file":
            return s.path
        names = [f.label[len(s.path) + 1:] if f.label.startswith(s.path + "/") else f.label for f in self.files]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        where = s.path
        if self.kind == "hub":
            where += (f"@{self.revision[:7]}" if self.revision else "") + f" ({self.origin})"
        subset = f", subset {s.subset}" if s.subset else ""
        return f"{where}{subset}, split {s.split}: {shown}"


def is_data_file(name: str) -> bool:
    return name.lower().endswith(DATA_SUFFIXES)


def resolve(spec: DataSpec | str) -> Source:
    """The data files of `spec` (a DataSpec, or a bare path with the default split)."""
    if isinstance(spec, str | Path):
        spec = DataSpec(str(spec))
    p = Path(spec.path).expanduser()
    if p.is_file():
        return Source(spec, "file", [SourceFile(p, spec.path)])
    if p.is_dir():
        files = _local_listing(p)
        if not _looks_like_dataset(p, files):
            raise UsageError(f"{spec.path}: is a directory, expected a .jsonl, .json, .parquet, .csv or .tsv file or a "
                             "dataset folder (README.md with configs, data/<split>-*.parquet, <split>.jsonl, "
                             "<split>/*.parquet)")
        chosen = select_files(spec.path, files, _readme(p), spec.split, spec.subset)
        return Source(spec, "folder", [SourceFile(p / f, str(Path(spec.path) / f)) for f in chosen], root=p)
    if p.exists():
        raise UsageError(f"{spec.path}: not a regular file or folder")
    if HUB_ID.match(spec.path) and not is_data_file(spec.path):
        return _resolve_hub(spec)
    hint = "" if is_data_file(spec.path) or "/" not in spec.path.strip("/") else \
        " (and not a hub dataset id of the form ORG/NAME)"
    raise UsageError(f"{spec.path}: no such file{hint}")


# ---------------------------------------------------------------- picking a split's files

def select_files(name: str, files: list[str], readme: str | None, split: str, subset: str | None) -> list[str]:
    """Paths (relative, '/'-separated, from `files`) that hold `split` of `subset`; UsageError if none."""
    configs = card_configs(readme)
    if configs:
        cfg = _pick_config(name, configs, subset)
        data_files = cfg.get("data_files")
        if data_files is not None:
            splits = _normalise_data_files(data_files)
            if split not in splits:
                raise UsageError(f"{name}: no split {split!r} in config {cfg.get('config_name', 'default')!r} "
                                 f"(splits: {', '.join(splits)}); pass --split NAME")
            out = [f for f in files if any(fnmatch.fnmatch(f, pat) for pat in splits[split])]
            if not out:
                raise UsageError(f"{name}: split {split!r}: none of its files ({', '.join(splits[split])}) "
                                 "are present")
            return sorted(out)
        subset = cfg.get("data_dir") or subset
    base = (subset.strip("/") + "/") if subset else ""
    data = [f for f in files if f.startswith(base) and is_data_file(f)]
    if subset and not data:
        raise UsageError(f"{name}: no data files under {subset}/ (--data-config names a config of README.md or a "
                         "sub-folder)")
    out = [f for f in data if _in_split(f[len(base):], split)]
    if out:
        return sorted(out)
    found = sorted({s for f in data for s in [_split_of(f[len(base):])] if s})
    if split == "train" and not found and data:
        return sorted(data)  # one unnamed file (or several): the train split, as `datasets` reads it
    raise UsageError(f"{name}: no split {split!r}" + (f" (splits: {', '.join(found)}); pass --split NAME"
                                                      if found else " and no data files found"))


def _in_split(rel: str, split: str) -> bool:
    parts = rel.split("/")
    if split in parts[:-1]:
        return True  # <split>/*.parquet, data/<split>/..., <subset>/<split>/...
    return bool(_SPLIT_NAME_EXTRA.match(_strip_suffix(parts[-1])[len(split):])) and \
        _strip_suffix(parts[-1]).startswith(split)


def _split_of(rel: str) -> str | None:
    """The split a file's name suggests (for error messages): train_prefs-00000-of-00001.parquet -> train_prefs."""
    parts = rel.split("/")
    stem = _SHARD.sub("", _strip_suffix(parts[-1]))
    stem = re.sub(r"[-_.]\d+$", "", stem)
    known = ("train", "test", "validation", "valid", "dev", "eval")
    if any(stem.startswith(k) or stem.endswith(k) for k in known):
        return stem
    for d in reversed(parts[:-1]):
        if d in known:
            return d
    return None


def _strip_suffix(name: str) -> str:
    low = name.lower()
    for suf in sorted(DATA_SUFFIXES, key=len, reverse=True):
        if low.endswith(suf):
            return name[: -len(suf)]
    return name


def card_configs(readme: str | None) -> list[dict]:
    """The `configs:` list of a dataset card's YAML front matter ([] when there is none)."""
    if not readme or not readme.startswith("---"):
        return []
    end = readme.find("\n---", 3)
    if end < 0:
        return []
    import yaml

    try:
        meta = yaml.safe_load(readme[3:end]) or {}
    except yaml.YAMLError:
        return []
    configs = meta.get("configs") if isinstance(meta, dict) else None
    return [c for c in configs if isinstance(c, dict)] if isinstance(configs, list) else []


def _pick_config(name: str, configs: list[dict], subset: str | None) -> dict:
    names = [str(c.get("config_name", "default")) for c in configs]
    if subset:
        for c, n in zip(configs, names):
            if n == subset:
                return c
        raise UsageError(f"{name}: no config {subset!r} (configs: {', '.join(names)}); pass --data-config NAME")
    for c, n in zip(configs, names):
        if c.get("default") is True or n == "default":
            return c
    if len(configs) == 1:
        return configs[0]
    raise UsageError(f"{name}: several configs ({', '.join(names)}); pass --data-config NAME")


def _normalise_data_files(data_files) -> dict[str, list[str]]:
    """README `data_files:` (a pattern, a list of patterns, or a list of {split, path}) -> {split: [patterns]}."""
    if isinstance(data_files, str):
        return {"train": [data_files]}
    out: dict[str, list[str]] = {}
    if isinstance(data_files, dict):
        data_files = [{"split": k, "path": v} for k, v in data_files.items()]
    for item in data_files or []:
        if isinstance(item, str):
            out.setdefault("train", []).append(item)
        elif isinstance(item, dict) and "path" in item:
            paths = item["path"] if isinstance(item["path"], list) else [item["path"]]
            out.setdefault(str(item.get("split", "train")), []).extend(str(x) for x in paths)
    return out


# ---------------------------------------------------------------- local folders

def _local_listing(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root)
        out += [(rel / f).as_posix() if str(rel) != "." else f for f in sorted(filenames) if not f.startswith(".")]
    return out


def _readme(root: Path) -> str | None:
    try:
        return (root / "README.md").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _looks_like_dataset(root: Path, files: list[str]) -> bool:
    """A dataset card, a data/ folder, .gitattributes (every hub repo has one) or split-named data files."""
    if (root / "README.md").is_file() or (root / ".gitattributes").is_file() or (root / "data").is_dir():
        return True
    return any(is_data_file(f) and _split_of(f) for f in files)


# ---------------------------------------------------------------- the hub

def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps repositories (read from the environment at call time)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def cached_snapshot(repo_id: str, revision: str | None) -> tuple[Path, str] | None:
    """(snapshot folder, commit) of a dataset in the local cache, or None."""
    repo = hub_cache_dir() / ("datasets--" + repo_id.replace("/", "--"))
    snaps = repo / "snapshots"
    if not snaps.is_dir():
        return None
    rev = revision or "main"
    if re.fullmatch(r"[0-9a-f]{40}", rev) and (snaps / rev).is_dir():
        return snaps / rev, rev
    ref = repo / "refs" / rev
    if ref.is_file():
        commit = ref.read_text().strip()
        if (snaps / commit).is_dir():
            return snaps / commit, commit
        return None
    if revision is None:  # no refs/main (e.g. copied by hand): the newest snapshot
        dirs = sorted((d for d in snaps.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime)
        if dirs:
            return dirs[-1], dirs[-1].name
    return None


def cached_datasets() -> list[str]:
    """Hub dataset ids with a snapshot in the local cache (for the app's Data tab)."""
    root = hub_cache_dir()
    if not root.is_dir():
        return []
    return sorted(d.name[len("datasets--"):].replace("--", "/", 1) for d in root.iterdir()
                  if d.name.startswith("datasets--") and (d / "snapshots").is_dir())


def _resolve_hub(spec: DataSpec) -> Source:
    repo_id = spec.path
    if not hub_offline():
        try:
            return _download(spec)
        except UsageError:
            raise
        except Exception as e:  # unreachable hub, timeouts: fall back to the cache below
            reason = first_line(e)
        else:  # pragma: no cover
            reason = ""
    else:
        reason = "offline (HF_HUB_OFFLINE=1)"
    hit = cached_snapshot(repo_id, spec.revision)
    if hit is None:
        rev = f" at revision {spec.revision!r}" if spec.revision else ""
        raise UsageError(f"{repo_id}: no such file or folder, and not in the local Hugging Face cache "
                         f"({hub_cache_dir()}){rev}; the hub could not be asked: {reason}. Download it first "
                         f"(`hf download {repo_id} --repo-type dataset`) or pass a local file")
    snap, commit = hit
    chosen = select_files(repo_id, _local_listing(snap), _readme(snap), spec.split, spec.subset)
    return Source(spec, "hub", [SourceFile(snap / f, f"{repo_id}/{f}") for f in chosen], root=snap,
                  revision=commit, origin="local cache")


def _download(spec: DataSpec) -> Source:
    """Online: list the repository, download the card and the split's files only."""
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    repo_id, cache = spec.path, str(hub_cache_dir())
    api = HfApi()
    try:
        files = api.list_repo_files(repo_id, repo_type="dataset", revision=spec.revision)
    except RepositoryNotFoundError:
        raise UsageError(f"{repo_id}: no such file, and no such dataset on the Hugging Face hub "
                         "(or it is private: log in with `hf auth login`)") from None
    except GatedRepoError:
        raise UsageError(f"{repo_id}: a gated dataset: accept its terms on huggingface.co and log in") from None
    except RevisionNotFoundError:
        raise UsageError(f"{repo_id}: no revision {spec.revision!r} (--data-revision)") from None
    readme = None
    if "README.md" in files:
        readme = Path(hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=spec.revision,
                                      cache_dir=cache)).read_text(encoding="utf-8", errors="replace")
    chosen = select_files(repo_id, files, readme, spec.split, spec.subset)
    local = Path(snapshot_download(repo_id, repo_type="dataset", revision=spec.revision, cache_dir=cache,
                                   allow_patterns=["README.md", *chosen]))
    return Source(spec, "hub", [SourceFile(local / f, f"{repo_id}/{f}") for f in chosen], root=local,
                  revision=local.name, origin="downloaded")
