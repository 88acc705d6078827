"""emo_mm.models.classifiers: the authors' net.pth, as it is, loads into the
ImageNet configs' EMOImageClassifier and reproduces their logits."""
import torch
from conftest import build_cpu_model
from mmengine.runner import load_checkpoint


def test_authors_checkpoint_reproduces_their_logits(authors_fixture, tmp_path):
    """Their net.pth, as it is, through the config's classifier."""
    fixture = authors_fixture
    _, model = build_cpu_model(
        f'imagenet/emo_{fixture["variant"]}_in1k.py',
        window_size=fixture['window_size'])
    assert sum(p.numel() for p in model.parameters()) == \
        fixture['num_params']
    path = str(tmp_path / 'net.pth')
    torch.save(fixture['state_dict'], path)
    load_checkpoint(model, path, strict=True)  # raises on any key mismatch
    model.eval()
    with torch.no_grad():
        logits = model(fixture['input'], mode='tensor')
    torch.testing.assert_close(
        logits, fixture['logits'].float(), atol=1e-5, rtol=0)
