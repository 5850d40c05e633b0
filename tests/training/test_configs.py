"""The configs: every group option and recipe composes into the typed schema; typos, wrong types and missing values
are refused by name; a user's recipe on Hydra's search path wins over a stored one."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError

from animatex_pp.training.config import compose_config, config_dir, recipe_names, recipes_dir, register_configs
from animatex_pp.training.schema import Mode, TrainConfig, load_train_config

GROUPS = ("model", "data", "task_mix", "adapter", "optim", "deepspeed", "trainer", "validation", "logger", "ablation")
# what composing needs besides a group option: a run folder and the clips a train-mode config must name
RUN = ["run_dir=/tmp/unused", "data.metadata=clips.jsonl"]


def _refusal(overrides: list[str]) -> str:
    """The whole message of the composition error, with the cause Hydra prints under it."""
    with pytest.raises(ConfigCompositionException) as error:
        compose_config(overrides)
    return f"{error.value} {error.value.__cause__}"


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_of_every_group_composes_into_the_schema(group):
    options = sorted(path.stem for path in (config_dir() / group).glob("*.yaml"))
    assert options, group
    for option in options:
        config = load_train_config(compose_config([f"{group}={option}", *RUN]))
        assert isinstance(config, TrainConfig) and config.trainer.max_steps >= 1


def test_recipes_compose_with_their_header():
    recipes = sorted(recipes_dir().glob("*.yaml"))
    assert {path.stem for path in recipes} >= {"animatex_pp_wan14b_480p", "synthx_tiny", "synthx_ablation"}
    assert recipe_names() == [path.stem for path in recipes]
    assert not (config_dir() / "recipe").exists()  # the recipes live in the top-level recipes/ only
    for path in recipes:
        lines = path.read_text().splitlines()
        assert lines[0] == "# @package _global_"
        assert any(line.startswith("# Launch:") for line in lines) and any(
            line.startswith("# Override:") for line in lines
        )
        load_train_config(compose_config([f"recipe={path.stem}", *RUN]))
    paper = load_train_config(compose_config(["recipe=animatex_pp_wan14b_480p", "mode=plan", "run_dir=/tmp/unused"]))
    assert paper.deepspeed.stage == 3 and paper.trainer.num_processes == 8 and paper.data.clips.num_frames == 81
    assert paper.task_mix.weights.ti2v > 0 and paper.adapter.lora.rank == 128 and paper.mode == Mode.plan


def test_the_ablation_recipe_sweeps_its_four_points_under_multirun():
    register_configs()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["recipe=synthx_ablation"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params == {"ablation": "full,no_ipi,no_epi,no_ti2v"}


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("trainer.max_stepz=3", "trainer.max_stepz"),  # a typo
        ("trainer.plan=true", "trainer.plan"),  # a key that is gone: plan mode is `mode=plan`
        ("trainer.max_steps=many", "trainer.max_steps"),  # a wrong type
        ("mode=plann", "expected one of [train, plan]"),
        ("deepspeed.stage=two", "deepspeed.stage"),
    ],
)
def test_a_typo_or_a_wrong_type_on_the_command_line_is_refused_by_name(override, named):
    assert named in _refusal([override, *RUN])


def test_a_key_added_with_a_plus_or_in_a_recipe_file_is_refused_by_name(tmp_path):
    with pytest.raises(ConfigKeyError, match=r"full_key: trainer\.plan"):
        load_train_config(compose_config(["+trainer.plan=true", *RUN]))
    (tmp_path / "recipe").mkdir()
    (tmp_path / "recipe" / "typo.yaml").write_text("# @package _global_\ntrainer:\n  max_stepz: 5\n")
    message = _refusal(["recipe=typo", f"hydra.searchpath=[file://{tmp_path}]", *RUN])
    assert "Key 'max_stepz' not in 'TrainerConfig'" in message and "full_key: trainer.max_stepz" in message


def test_values_a_type_cannot_check_are_refused_by_name_before_any_model_loads():
    with pytest.raises(ValueError, match="give data.metadata=PATH"):
        load_train_config(compose_config(["run_dir=/tmp/unused"]))
    assert load_train_config(compose_config(["run_dir=/tmp/unused", "mode=plan"])).data.metadata is None
    refusals = {
        "trainer.max_steps=0": "trainer.max_steps must be a positive integer",
        "optim.scheduler=cosine_annealing": "optim.scheduler must be one of constant_with_warmup",
        "optim.scheduler=constant": "optim.scheduler=constant has no warm-up",  # with synthx_tiny's 20 warm-up steps
        "deepspeed.offload_param=true": "offload_param needs ZeRO stage 3",
        "trainer.dropout.pose=2": r"trainer.dropout.pose must be in \[0, 1\]",
        "trainer.objective.weighting_scheme=gauss": "trainer.objective.weighting_scheme must be one of",
        "validation=default": "give validation.metadata=PATH",
    }
    for override, message in refusals.items():
        with pytest.raises(ValueError, match=message):
            load_train_config(compose_config(["recipe=synthx_tiny", "data.prepare=null", "data.metadata=null",
                                              "data.cache=/tmp/cache", override, "run_dir=/tmp/unused"]))  # fmt: skip


def test_a_users_recipe_on_the_search_path_composes_and_extends_a_stored_one(tmp_path):
    (tmp_path / "recipe").mkdir()
    (tmp_path / "recipe" / "my_recipe.yaml").write_text(
        "# @package _global_\ndefaults:\n  - animatex_pp_wan14b_480p\n  - _self_\nadapter:\n  lora: {rank: 32}\n"
    )
    searchpath = f"hydra.searchpath=[file://{tmp_path}]"
    mine = compose_config(["recipe=my_recipe", searchpath, "run_dir=x"])
    assert mine.adapter.lora.rank == 32 and mine.deepspeed.stage == 3  # the stored recipe, extended


def test_a_users_recipe_named_like_a_stored_one_is_refused_by_hydra(tmp_path):
    # Hydra 1.3 takes a ConfigStore entry at the same path as a file's schema ("automatic schema matching") and
    # refuses a matched schema with a defaults list, which every stored recipe has: a user's recipe needs a name of
    # its own (docs/training.md, "Recipes"). Should Hydra drop that matching, the file would win: this test says so.
    (tmp_path / "recipe").mkdir()
    (tmp_path / "recipe" / "synthx_tiny.yaml").write_text("# @package _global_\ntrainer:\n  max_steps: 7\n")
    message = _refusal(["recipe=synthx_tiny", f"hydra.searchpath=[file://{tmp_path}]", "run_dir=x"])
    assert "'recipe/synthx_tiny' is validated against ConfigStore schema with the same name" in message
