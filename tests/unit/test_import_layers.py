"""The package's layering: no import cycle (between rooms or between files), and every import between rooms runs
down the floors declared here (``python -m tests.import_graph`` prints the graph). A new room must be given a floor."""
from tests.import_graph import cycles, file_edges, room, room_edges

FLOORS = {
    "util": 0, "sharding": 0, "hub": 0, "audio_files": 0,
    "text": 1, "model": 1,
    "codec": 2,
    "objectives": 3, "decoding": 3,
    "convert": 4,
    "data": 5,
    "presets": 6,
    "training": 7,
    "codec_training": 8, "bundled": 8,
    "configs": 9,
    "pipelines": 10,
    "eval": 11, "jobs": 11,
    # deprecated aliases of moved names (import their targets lazily, one release)
    "pipeline": 12, "masking": 12, "musicgen": 12,
    "magnet_jax": 13,   # the package's own __init__ (re-exports nothing)
}


def test_every_room_has_a_floor():
    rooms = set(room_edges(file_edges()))
    assert rooms <= set(FLOORS), f"give these rooms a floor in FLOORS: {sorted(rooms - set(FLOORS))}"


def test_no_import_cycles():
    fe = file_edges()
    assert cycles(fe) == []
    assert cycles(room_edges(fe)) == []


def test_imports_run_down_the_floors():
    up = sorted(f"{a} -> {b}" for a, targets in file_edges().items() for b in targets
                if room(a) != room(b) and FLOORS.get(room(b), 99) >= FLOORS.get(room(a), -1))
    assert up == []


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "magnet_jax"
    (pkg / "low").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "__init__.py").write_text("from .a import x\n")
    (pkg / "low" / "a.py").write_text("x = 1\n")
    (pkg / "high.py").write_text("def f():\n    from magnet_jax.low import a\n    return a\n")
    fe = file_edges(tmp_path)
    assert fe["magnet_jax.high"] == {"magnet_jax.low.a"}
    assert fe["magnet_jax.low"] == {"magnet_jax.low.a"}
    assert room_edges(fe)["high"] == {"low"}


def test_docs_layout_names_every_module():
    """docs/LAYOUT.md is the package's map: every module file is named there."""
    from tests.import_graph import ROOT
    layout = (ROOT / "docs" / "LAYOUT.md").read_text()
    missing = sorted(str(f.relative_to(ROOT)) for f in (ROOT / "magnet_jax").rglob("*.py")
                     if f.name != "__init__.py" and f.name not in layout and f.stem not in layout)
    assert missing == [], f"add these modules to docs/LAYOUT.md: {missing}"
