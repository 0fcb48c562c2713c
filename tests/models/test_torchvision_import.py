"""train.py --init-from with a torchvision-format ResNet state dict: the key layout is detected, mapped onto
the gated model (gates open), and the classifier re-initialised when the class count differs. The state
dict is built here in torchvision's key layout by a small reference ResNet (no download, no torchvision)."""

import pytest
import torch
from torch import nn

from cosinegate.errors import CosineGateError
from cosinegate.models import CosineGateNet
from cosinegate.models.torchvision_import import detect_backbone, is_torchvision_layout, map_state_dict
from cosinegate.training.init_from import apply_init, read_init_weights


class Basic(nn.Module):
    expansion = 1

    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = None if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        s = x if self.downsample is None else self.downsample(x)
        return torch.relu(s + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * 4
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = None if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        s = x if self.downsample is None else self.downsample(x)
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(self.bn2(self.conv2(h)))
        return torch.relu(s + self.bn3(self.conv3(h)))


class ReferenceResNet(nn.Module):
    """torchvision's ResNet module layout (attribute names = state-dict keys)."""

    def __init__(self, block, depths, num_classes):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        self.relu, self.maxpool = nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        cin = 64
        for stage, (width, depth) in enumerate(zip((64, 128, 256, 512), depths)):
            layers = []
            for i in range(depth):
                layers.append(block(cin, width, 2 if stage and not i else 1))
                cin = width * block.expansion
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layers))
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(cin, num_classes)

    def features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in range(1, 5):
            x = getattr(self, f"layer{stage}")(x)
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x):
        return self.fc(self.features(x))


LAYOUTS = {"resnet18": (Basic, (2, 2, 2, 2)), "resnet34": (Basic, (3, 4, 6, 3)), "resnet50": (Bottleneck, (3, 4, 6, 3))}


def reference(backbone, num_classes, seed=0):
    torch.manual_seed(seed)
    model = ReferenceResNet(*LAYOUTS[backbone], num_classes)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a swapped tensor shows
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.2, 0.6)
                m.bias.uniform_(-0.1, 0.1)
    return model.eval()


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_same_class_count_gives_the_same_network_with_gates_open(backbone, tmp_path):
    ref = reference(backbone, 1000)
    path = tmp_path / f"{backbone}.pth"
    torch.save(ref.state_dict(), path)
    weights, source = read_init_weights(path)
    assert source["format"] == "torchvision-state-dict" and source["backbone"] == backbone and source["num_classes"] == 1000
    model = CosineGateNet(backbone, "predictive", num_classes=1000, image_size=64)
    report = apply_init(model, weights, source)
    assert report["reinitialised"] == [] and report["ignored_tensors"] == []
    assert report["fresh_modules"] and all(".gate" in m for m in report["fresh_modules"])  # only the gates are new
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, stats = model.eval()(x)
        expected = ref(x)
    assert stats.gates.all()  # every gate starts open
    assert torch.allclose(logits, expected, atol=1e-4, rtol=1e-4)


def test_other_class_count_reinitialises_the_classifier(tmp_path):
    ref = reference("resnet34", 1000)
    path = tmp_path / "r34.pth"
    torch.save({"state_dict": ref.state_dict()}, path)  # wrapped, as some training scripts save it
    model = CosineGateNet("resnet34", "predictive", num_classes=3, image_size=48)
    torch.manual_seed(1)
    before = model.fc.weight.clone()
    report = apply_init(model, *read_init_weights(path))
    assert report["reinitialised"] == ["fc.bias", "fc.weight"]
    assert torch.equal(model.fc.weight, before)  # the 3-class head keeps its fresh initialization
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        pooled, stats = model.eval().features(x)
        assert torch.allclose(pooled, ref.features(x), atol=1e-4, rtol=1e-4)  # the backbone is the file's
    assert stats.gates.all()


def test_detection_and_refusals(tmp_path):
    state = reference("resnet18", 10).state_dict()
    assert is_torchvision_layout(state) and detect_backbone(state) == "resnet18"
    assert not is_torchvision_layout(CosineGateNet("resnet18", image_size=32).state_dict())
    mapped, backbone = map_state_dict(state)
    assert backbone == "resnet18" and "blocks.2.shortcut.0.weight" in mapped and "blocks.7.residual.4.running_var" in mapped
    torch.save(state, tmp_path / "r18.pth")
    with pytest.raises(CosineGateError, match="holds a resnet18 but this run trains a resnet50"):
        apply_init(CosineGateNet("resnet50", image_size=32), *read_init_weights(tmp_path / "r18.pth"))
    odd = dict(state)
    odd["layer2.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(CosineGateError, match="first: layer2.0.extra.weight"):
        map_state_dict(odd)
    deeper = {k.replace("layer3.1.", "layer3.5."): v for k, v in state.items()}
    with pytest.raises(CosineGateError, match=r"basic blocks \[2, 2, 6, 2\] per stage"):
        detect_backbone(deeper)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CosineGateError, match="corrupt or unreadable"):
        read_init_weights(tmp_path / "junk.pth")


def test_training_from_torchvision_weights(tmp_path, fake_cifar_root):
    """train.py's path (the Trainer a run starts with): 10 fake-CIFAR classes onto 1000-class weights; ImageNet
    normalization chosen, and the source recorded in the checkpoint state."""
    from conftest import tiny_config
    from cosinegate.training.loop import Trainer

    ref = reference("resnet18", 1000)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    config = tiny_config(fake_cifar_root)
    config["model"]["backbone"] = "resnet18"
    config["init_from"] = str(tmp_path / "r18.pth")
    trainer = Trainer(config, tmp_path / "run", "cpu", progress=False)
    state = trainer.state(0)
    assert state["init_from"]["format"] == "torchvision-state-dict" and state["init_from"]["reinitialised"] == ["fc.bias", "fc.weight"]
    assert state["normalization"]["mean"] == [0.485, 0.456, 0.406] and "init-from" in state["normalization"]["source"]
    assert torch.equal(state["model"]["blocks.5.residual.3.weight"], ref.layer3[1].conv2.weight)
    assert state["model"]["fc.weight"].shape == (10, 512)
