import textwrap

import pytest

from hepjax import config as config_lib


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "my_config.py"
    path.write_text(textwrap.dedent("""
        import ml_collections
        def get_config(arg=""):
            c = ml_collections.ConfigDict()
            c.lr = 0.1
            c.steps = 10
            c.name = "mlp"
            c.hidden = (4, 4)
            c.flag = False
            c.sub = ml_collections.ConfigDict({"x": 1})
            if arg == "big":
                c.steps = 1000
            return c
    """))
    return path


def test_load_file_and_variant(config_file):
    assert config_lib.load_config(str(config_file)).steps == 10
    assert config_lib.load_config(f"{config_file}:big").steps == 1000


def test_overrides_are_typed(config_file):
    c = config_lib.load_config(str(config_file))
    config_lib.parse_overrides(c, ["--config.lr=1", "--config.sub.x=3", "--config.name=pfn",
                                   "--config.hidden=(8,8,8)", "--config.flag", "True"])
    assert c.lr == 1.0 and isinstance(c.lr, float)
    assert c.sub.x == 3 and c.name == "pfn" and c.hidden == (8, 8, 8) and c.flag is True


def test_bad_overrides_name_the_field(config_file):
    c = config_lib.load_config(str(config_file))
    with pytest.raises(KeyError, match="no field 'stepz'"):
        config_lib.parse_overrides(c, ["--config.stepz=3"])
    with pytest.raises(TypeError, match="steps"):
        config_lib.parse_overrides(c, ["--config.steps=0.5"])
    with pytest.raises(ValueError, match="unrecognised"):
        config_lib.parse_overrides(c, ["--lr=3"])


def test_json_round_trip(config_file):
    c = config_lib.load_config(str(config_file))
    again = config_lib.from_json(config_lib.to_json(c))
    assert again.sub.x == 1 and list(again.hidden) == [4, 4]


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.py"):
        config_lib.load_config(str(tmp_path / "nope.py"))
