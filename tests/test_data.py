import pytest

from doodl_pl.data import DoodlDataModule, ItemsError, grid_items, parse_seeds, read_items, shard


def test_jsonl_and_csv(tmp_path):
    (tmp_path / "a.jsonl").write_text(
        '{"id": "x", "prompt": "a cat", "seed": 3, "class_index": "2"}\n\n'
        '{"id": "y", "prompt": "a dog", "image": "p.png", "reference_images": ["r.png"]}\n'
    )
    items = read_items(tmp_path / "a.jsonl")
    assert [it.id for it in items] == ["x", "y"] and items[0].class_index == 2
    assert items[1].image == str(tmp_path / "p.png")
    assert items[1].reference_images == [str(tmp_path / "r.png")]
    (tmp_path / "b.csv").write_text("id,prompt,seed,reference_images\nz,a bird,7,r1.png;r2.png\n")
    (item,) = read_items(tmp_path / "b.csv")
    assert item.seed == 7 and len(item.reference_images) == 2


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b", "prompt": \n')
    with pytest.raises(ItemsError, match=rf"{path}:2: malformed JSON"):
        read_items(path)
    path.write_text('{"id": "a"}\n{"id": "a"}\n')
    with pytest.raises(ItemsError, match="duplicate id 'a'"):
        read_items(path)
    path.write_text('{"prompt": "no id"}\n')
    with pytest.raises(ItemsError, match=":1: missing `id`"):
        read_items(path)
    path.write_text('{"id": "a", "seed": "x1"}\n')
    with pytest.raises(ItemsError, match=":1: .*`seed`"):
        read_items(path)


def test_grid_and_seeds(tmp_path):
    (tmp_path / "p.txt").write_text("a cat\n\n# comment\na dog\n")
    items = grid_items(tmp_path / "p.txt", parse_seeds("0-2"))
    assert len(items) == 6 and items[0].id == "p0001_s0" and items[-1].id == "p0004_s2"
    assert parse_seeds(5) == [5] and parse_seeds([1, 3]) == [1, 3]
    with pytest.raises(ValueError, match="seeds"):
        parse_seeds("a-b")


@pytest.mark.parametrize("n,world,bs", [(7, 2, 2), (3, 4, 1), (8, 3, 3), (1, 2, 5), (0, 2, 1)])
def test_shard_every_item_once_equal_batches(n, world, bs):
    items = list(range(n))
    per_rank = [shard(items, r, world, bs) for r in range(world)]
    assert len({len(b) for b in per_rank}) == 1
    done = [
        it
        for batches in per_rank
        for chunk, pads in batches
        for it, p in zip(chunk, pads, strict=True)
        if not p
    ]
    assert sorted(done) == items


def test_datamodule_needs_one_source():
    with pytest.raises(ValueError, match="exactly one of"):
        DoodlDataModule()
    with pytest.raises(ValueError, match="batch_size"):
        DoodlDataModule(inline=[{"id": "a"}], batch_size=0)
