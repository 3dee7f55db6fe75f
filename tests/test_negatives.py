"""Hard-negative captions (NegCLIP data) and the CLIP recipe that trains on them."""

import pytest
import torch
from helpers import ROOT

from doodl_pl.shapes64 import Obj, Scene, caption, sample_scene
from doodl_pl.shapes64.negatives import KINDS, OPPOSITE, describe, hard_negatives, scene_key


def test_each_kind_changes_exactly_one_thing():
    a = Obj("square", "red", None, 9.0, 20.0, 20.0)
    b = Obj("star", "blue", "green", 9.0, 20.0, 45.0)
    scene = Scene("white", [a, b], "above")
    assert describe(a, "above", b) == "a red square above a blue star"
    assert hard_negatives(scene) == {
        "colors": "a blue square above a red star",
        "shapes": "a red star above a blue square",
        "relation": "a red square below a blue star",
    }
    # deduplicated by scene: with two squares, "an orange square to the left of a red square"
    # (colors) and "a red square to the right of an orange square" (relation) say one thing
    twins = Scene("white", [a, Obj("square", "orange", None, 9.0, 45.0, 20.0)], "to the left of")
    assert hard_negatives(twins) == {"colors": "an orange square to the left of a red square"}
    # two like objects: no change of one thing describes another scene
    same = Scene("white", [a, Obj("square", "red", "blue", 7.0, 45.0, 20.0)], "above")
    assert hard_negatives(same) == {}
    assert hard_negatives(Scene("white", [a])) == {}
    assert all(OPPOSITE[OPPOSITE[r]] == r for r in OPPOSITE)


def test_scene_key_reads_the_scene_not_the_words():
    a = Obj("square", "red", None, 9.0, 20.0, 20.0)
    b = Obj("pentagon", "blue", None, 9.0, 20.0, 45.0)
    hexagon = Obj("hexagon", "blue", None, 9.0, 20.0, 45.0)
    assert scene_key(b, "below", a) == scene_key(a, "above", b)
    assert scene_key(a, "to the right of", b) == scene_key(b, "to the left of", a)
    assert scene_key(a, "above", b) != scene_key(b, "above", a)
    assert scene_key(a, "above", b) == scene_key(a, "above", hexagon)  # both are "polygon"s


def test_negatives_follow_the_worlds_grammar_and_are_never_true():
    import numpy as np

    kinds = set()
    for seed in range(200):
        scene = sample_scene(seed, n_objects=2)
        a, b = scene.objects
        true = caption(scene, np.random.default_rng(seed))
        assert describe(a, scene.relation, b) == true  # the same grammar as the data
        negatives = hard_negatives(scene)
        kinds |= set(negatives)
        assert set(negatives) <= set(KINDS)
        # no negative describes the true scene or another negative's scene
        keys = [scene_key(a, scene.relation, b)]
        for text in negatives.values():
            o1, rel, o2 = _parse(text)
            keys.append(scene_key(o1, rel, o2))
        assert len(set(keys)) == len(keys), (true, negatives)
        words = sorted(w for w in true.split() if w not in ("a", "an"))
        for kind, text in negatives.items():  # the same words, but for the reversed relation
            mine = sorted(w for w in text.split() if w not in ("a", "an"))
            if kind == "relation":
                assert text == describe(a, OPPOSITE[scene.relation], b)
            else:
                assert mine == words, (kind, text, true)
    assert kinds == set(KINDS)


def _parse(text: str) -> tuple[Obj, str, Obj]:
    """A caption of the world's grammar back into (object, relation, object)."""
    from doodl_pl.shapes64.world import SHAPE_WORD

    words = text.split()
    for rel in OPPOSITE:
        r = rel.split()
        for i in range(len(words) - len(r) + 1):
            if words[i : i + len(r)] == r:
                first, second = words[:i], words[i + len(r) :]
                shape = {w: s for s, w in SHAPE_WORD.items()}
                return (
                    Obj(shape[first[-1]], first[-2], None, 1.0, 0.0, 0.0),
                    rel,
                    Obj(shape[second[-1]], second[-2], None, 1.0, 0.0, 0.0),
                )
    raise AssertionError(text)


@pytest.fixture(scope="module")
def clip_recipe(tmp_path_factory):
    from doodl_pl.shapes64.recipes import ClipRecipe

    return ClipRecipe(export_dir=str(tmp_path_factory.mktemp("clip")))


def test_hard_negative_term_counts_only_two_object_images(clip_recipe, monkeypatch):
    """The term (−log p(true caption) among it and its negatives, > 0) raises the loss of a batch
    with two-object scenes, and changes nothing on a batch of one-object scenes."""
    from doodl_pl.shapes64.dataset import load_split
    from doodl_pl.shapes64.recipes import ClipRecipe

    images, records = load_split("train", 24)
    monkeypatch.setattr(ClipRecipe, "records", property(lambda self: records))
    clip_recipe.log = lambda *a, **k: None
    batch = (torch.from_numpy(images).permute(0, 3, 1, 2), torch.arange(24))
    two = [len(r["objects"]) == 2 for r in records]
    assert any(two) and not all(two)

    def loss(hard, rows):
        clip_recipe.hard_negatives = 1.0 if hard else None
        with torch.no_grad():
            return float(clip_recipe.training_step((batch[0][rows], batch[1][rows]), 0))

    everything = list(range(24))
    assert loss(True, everything) > loss(False, everything) + 1e-4
    one = [i for i in everything if not two[i]]
    assert loss(True, one) == pytest.approx(loss(False, one), abs=1e-6)


def test_recipe_starts_from_given_weights(tmp_path):
    from safetensors.torch import load_file

    from doodl_pl.shapes64.assets import CLIP, available
    from doodl_pl.shapes64.recipes import ClipRecipe

    if not available()["clip"]:
        pytest.skip("shipped Shapes-64 CLIP missing")
    recipe = ClipRecipe(init_weights=CLIP.pretrained, export_dir=str(tmp_path))
    shipped = load_file(str(ROOT / "doodl_pl" / "assets" / CLIP.pretrained))
    for k, v in recipe.model.state_dict().items():
        torch.testing.assert_close(v, shipped[k].float())


def test_hard_negative_term_trains(monkeypatch, tmp_path):
    """The term can be driven down: 30 AdamW steps on one batch of two-object scenes from the
    shipped CLIP take it from about log 4 to near 0 (the model can tell these captions apart)."""
    from doodl_pl.shapes64.assets import CLIP, available
    from doodl_pl.shapes64.dataset import load_split
    from doodl_pl.shapes64.recipes import ClipRecipe

    if not available()["clip"]:
        pytest.skip("shipped Shapes-64 CLIP missing")
    images, records = load_split("tune_two", 16)
    monkeypatch.setattr(ClipRecipe, "records", property(lambda self: records))
    torch.manual_seed(0)
    recipe = ClipRecipe(hard_negatives=5.0, init_weights=CLIP.pretrained, export_dir=str(tmp_path))
    first, last = _train_term(recipe, images, "train/hard_negatives", 30)
    assert first > 0.5 and last < 0.05 * first


def _train_term(recipe, images, key: str, steps: int) -> tuple[float, float]:
    """AdamW (lr 1e-3) on the recipe's own ``training_step`` over one batch of ``images``;
    the logged ``key`` at the first and the last step."""
    logs = {}
    recipe.log = lambda name, value, **kw: logs.__setitem__(name, float(value))
    opt = torch.optim.AdamW(recipe.model.parameters(), 1e-3)
    batch = (torch.from_numpy(images).permute(0, 3, 1, 2), torch.arange(len(images)))
    for step in range(steps):
        loss = recipe.training_step(batch, 0)
        if step == 0:
            first = logs[key]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return first, logs[key]


def test_entity_term_trains(monkeypatch, tmp_path):
    """The image term of issue 28 #2 can be driven down: from a random CLIP (chance: log 5 over
    the entity and its four near misses; the shipped CLIP was trained with the term already), 40
    AdamW steps on one batch of outlined one-object scenes take it below a quarter of that."""
    from doodl_pl.shapes64.dataset import load_split
    from doodl_pl.shapes64.recipes import ClipRecipe

    images, records = load_split("tune_one", 96)
    keep = [k for k, r in enumerate(records) if r["objects"][0]["outline"]][:12]
    images, records = images[keep], [records[k] for k in keep]
    monkeypatch.setattr(ClipRecipe, "records", property(lambda self: records))
    torch.manual_seed(0)
    recipe = ClipRecipe(entity_negatives=1.0, export_dir=str(tmp_path))
    first, last = _train_term(recipe, images, "train/entity_negatives", 40)
    assert len(keep) >= 8 and first > 1.2 and last < 0.25 * first
    with pytest.raises(ValueError, match="entity_negatives"):
        ClipRecipe(entity_negatives=0.0, export_dir=str(tmp_path))


def test_relation_terms_train(monkeypatch, tmp_path):
    """The two relation terms of issue 28 #3 can be driven down on one batch of two-object
    scenes from a random CLIP: the caption against the same scene with the objects' places
    exchanged starts near chance (log 2); the caption nearer its paraphrase ("B below A") than
    its relation reversed ("A below B") starts above it, as an order-blind text tower puts the
    reversed caption, with the same words in the same places but one, nearer."""
    from doodl_pl.shapes64.dataset import load_split
    from doodl_pl.shapes64.recipes import ClipRecipe

    images, records = load_split("tune_two", 16)
    monkeypatch.setattr(ClipRecipe, "records", property(lambda self: records))
    for key, start, steps in (
        ("relation_images", (0.3, 1.2), 40),
        ("relation_texts", (0.8, 2.0), 60),
    ):
        torch.manual_seed(0)
        recipe = ClipRecipe(export_dir=str(tmp_path), **{key: 1.0})
        first, last = _train_term(recipe, images, f"train/{key}", steps)
        assert start[0] < first < start[1] and last < 0.25 * first, (key, first, last)
        with pytest.raises(ValueError, match=key):
            ClipRecipe(export_dir=str(tmp_path), **{key: 0.0})


def test_shared_token_table_is_frozen_left_out_and_filled_in(tmp_path):
    """``tokens_from`` takes another CLIP's token table and keeps it frozen; the export leaves it
    out, and ``ClipSpec(base=…)`` fills it back in."""
    from safetensors.torch import load_file

    from doodl_pl.hub import ModelLoadError
    from doodl_pl.losses.clip_models import ClipModel, ClipSpec
    from doodl_pl.shapes64.assets import CLIP, available
    from doodl_pl.shapes64.recipes import ClipRecipe
    from doodl_pl.shapes64.recipes.clip import TOKENS

    if not available()["clip"]:
        pytest.skip("shipped Shapes-64 CLIP missing")
    table = load_file(str(ROOT / "doodl_pl" / "assets" / CLIP.pretrained))[TOKENS].float()
    recipe = ClipRecipe(tokens_from=CLIP.pretrained, export_dir=str(tmp_path), name="rel-test")
    weight = recipe.model.token_embedding.weight
    assert torch.equal(weight, table) and not weight.requires_grad
    recipe.export()
    config, weights = str(tmp_path / "rel-test.json"), str(tmp_path / "rel-test.safetensors")
    exported = load_file(weights)
    assert TOKENS not in exported and "text_projection" in exported
    clip = ClipModel(ClipSpec(config, weights, base=CLIP.pretrained)).model
    assert torch.equal(clip.token_embedding.weight, table)
    torch.testing.assert_close(clip.text_projection, exported["text_projection"].float())
    with pytest.raises(ModelLoadError, match="token_embedding"):
        ClipModel(ClipSpec(config, weights))  # the table is missing without its base
    with pytest.raises(ValueError, match="`base`"):
        ClipModel(ClipSpec(config, None, base=CLIP.pretrained))


def test_image_tower_can_start_from_another_clip(tmp_path):
    """``image_from`` takes another CLIP's image tower (``visual.*``) and nothing else."""
    from safetensors.torch import load_file

    from doodl_pl.shapes64.assets import CLIP, available
    from doodl_pl.shapes64.recipes import ClipRecipe

    if not available()["clip"]:
        pytest.skip("shipped Shapes-64 CLIP missing")
    shipped = load_file(str(ROOT / "doodl_pl" / "assets" / CLIP.pretrained))
    torch.manual_seed(0)
    state = ClipRecipe(image_from=CLIP.pretrained, export_dir=str(tmp_path)).model.state_dict()
    visual = [k for k in shipped if k.startswith("visual.")]
    assert visual and all(torch.equal(state[k], shipped[k].float()) for k in visual)
    assert not torch.equal(state["text_projection"], shipped["text_projection"].float())
