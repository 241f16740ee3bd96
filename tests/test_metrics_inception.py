"""The optional Inception-v3 backbone loads from a local weights file, never the network."""
import collections

import pytest
import torch
from safetensors.torch import save_file

from mixgan.errors import MixganError
from mixgan.metrics import get_backbone
from mixgan.metrics.inception import InceptionBackbone, InceptionV3, load_inception


class NotAllowed:
    pass


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    net = InceptionV3(num_classes=10).eval()
    folder = tmp_path_factory.mktemp("inception")
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(folder / "w.safetensors"))
    # torchvision-style file: DataParallel prefix and an auxiliary head we do not use
    pth = collections.OrderedDict((f"module.{k}", v) for k, v in state.items())
    pth["module.AuxLogits.fc.weight"] = torch.zeros(10, 768)
    torch.save(pth, folder / "w.pth")
    return net, folder


def test_inception_loads_safetensors_and_torch_state_dicts_and_gives_the_same_outputs(saved):
    net, folder = saved
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    a = InceptionBackbone(folder / "w.safetensors", size=75)
    b = get_backbone("inception", data=None, weights=str(folder / "w.pth"))
    b.size = 75
    fa, pa = a.embed(x)
    fb, pb = b.embed(x)
    assert fa.shape == (3, 2048) and pa.shape == (3, 10)
    assert torch.allclose(pa.sum(1), torch.ones(3), atol=1e-5)
    assert torch.allclose(fa, fb, atol=1e-5) and torch.allclose(pa, pb, atol=1e-5)
    with torch.no_grad():
        ref_f, _ = net(torch.nn.functional.interpolate(x.expand(-1, 3, -1, -1), size=(75, 75), mode="bilinear"))
    assert torch.allclose(fa, ref_f, atol=1e-5)  # the weights really were loaded
    assert a.id != "inception" and a.num_classes == 10


def test_inception_has_torchvisions_parameter_count(saved):
    net, _ = saved
    # torchvision's Inception3: 27,161,264 parameters, 3,326,696 of them in the auxiliary head;
    # ours has a 10-class fc instead of 1000 classes
    assert sum(p.numel() for p in net.parameters()) == 27_161_264 - 3_326_696 - 990 * 2049


def test_inception_refuses_missing_foreign_and_unsafe_files(saved, tmp_path):
    _, folder = saved
    with pytest.raises(MixganError, match="needs --weights"):
        get_backbone("inception", data=None)
    with pytest.raises(MixganError, match="file not found"):
        load_inception(tmp_path / "none.pth")
    save_file({"fc.weight": torch.zeros(10, 2048), "other": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(MixganError, match="not an Inception-v3 state dict"):
        load_inception(tmp_path / "foreign.safetensors")
    torch.save({"fc.weight": NotAllowed()}, tmp_path / "unsafe.pth")
    with pytest.raises(MixganError, match="not a readable weights file"):
        load_inception(tmp_path / "unsafe.pth")
    with pytest.raises(MixganError, match="unknown backbone"):
        get_backbone("vgg", data=None)
