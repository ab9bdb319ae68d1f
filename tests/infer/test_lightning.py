import torch

from tests.conftest import small_model


def test_ddp_with_two_cpu_processes_ends_with_identical_parameters(registered, tmp_path):
    model = small_model(registered)
    before = {k: v.clone() for k, v in model.guide.state_dict().items()}
    model.train(max_steps=4, devices=2, batch_size=32, lr=1e-2, progress=False, process_dir=tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:
        torch.testing.assert_close(ranks[0][key], ranks[1][key], rtol=0, atol=0)
    after = model.guide.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # training moved the parameters
    torch.testing.assert_close(after["mask.logits"], ranks[0]["guide.mask.logits"], rtol=0, atol=0)
