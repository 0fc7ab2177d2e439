from pix2pix_tr.data import AlignedDataset, EpochSampler, make_dataloader


def test_fixtures_and_loader_smoke(synthetic_city, ab_root):
    assert len(list((synthetic_city / "gtFine" / "train").rglob("*_gtFine_labelIds.png"))) == 8
    ds = AlignedDataset(ab_root, "train", direction="BtoA", load_size=72, crop_size=64)
    assert len(ds) == 8
    sampler = EpochSampler(len(ds), seed=0)
    sampler.set_epoch(1)
    batches = list(make_dataloader(ds, 4, sampler))
    assert [b["A"].shape[0] for b in batches] == [4, 4]
    assert batches[0]["A"].shape[1:] == (3, 64, 64)
