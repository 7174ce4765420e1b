"""The float import of a quantized TFLite network (``depth-node train --init teacher``), against LiteRT itself."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from depth_node.train.tflite_import import _stride_and_padding

REPO = Path(__file__).resolve().parent.parent
FASTDEPTH = REPO.parent / "shared" / "models" / "fastdepth" / "fast_depth_224.tflite"
UNLABELED = REPO.parent / "shared" / "data" / "train" / "unlabeled"
needs_fastdepth = pytest.mark.skipif(not FASTDEPTH.is_file() or not UNLABELED.is_dir(), reason="../shared FastDepth or train data absent")


def _frames(count: int) -> list[np.ndarray]:
    files = sorted(p for p in UNLABELED.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    picks = [files[i] for i in np.linspace(0, len(files) - 1, count).astype(int)]  # corridors and roads
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in picks]


def test_stride_and_padding_of_valid_and_same_convolutions() -> None:
    assert _stride_and_padding(226, 112, 3) == (2, (0, 0))     # explicit PAD 1 + VALID stride 2
    assert _stride_and_padding(56, 56, 1) == (1, (0, 0))       # pointwise
    assert _stride_and_padding(32, 28, 5) == (1, (0, 0))       # 5×5 after PAD 2
    assert _stride_and_padding(56, 56, 3) == (1, (1, 1))       # SAME, stride 1
    assert _stride_and_padding(57, 29, 3) == (2, (1, 1))       # SAME, stride 2, odd input
    assert _stride_and_padding(56, 28, 3) == (2, (0, 1))       # SAME puts the odd pixel after, as TFLite does
    with pytest.raises(ValueError, match="stride"):
        _stride_and_padding(10, 40, 3)


@needs_fastdepth
def test_float_import_reproduces_the_int8_network() -> None:
    """Same frames through LiteRT (int8) and the float import at the file's 224×224: equal up to quantization noise."""
    from ai_edge_litert.interpreter import Interpreter

    from depth_node.train.tflite_import import load_tflite_graph

    graph = load_tflite_graph(FASTDEPTH)
    assert graph.input_range == pytest.approx((0.0, 1.0))
    assert 1.0e6 < sum(p.numel() for p in graph.parameters()) < 2.5e6     # fits the 10 MB budget as fp32
    interpreter = Interpreter(model_path=str(FASTDEPTH))
    interpreter.allocate_tensors()
    out = interpreter.get_output_details()[0]
    scale = float(out["quantization_parameters"]["scales"][0])
    for rgb in _frames(4):
        small = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA)
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], small[None])
        interpreter.invoke()
        reference = interpreter.get_tensor(out["index"])[0, :, :, 0].astype(np.float64) * scale
        with torch.no_grad():
            ours = graph(torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255)[0, 0].double().numpy()
        valid = reference > 0.5
        relative = np.abs(ours[valid] - reference[valid]) / reference[valid]
        assert np.median(relative) < 0.06, np.median(relative)
        assert np.corrcoef(ours[valid], reference[valid])[0, 1] > 0.95
        with torch.no_grad():  # an untrained-for size (4:3 at 256×192) runs and stays positive
            wide = graph(torch.from_numpy(cv2.resize(rgb, (256, 192))).permute(2, 0, 1)[None].float() / 255)
        assert wide.shape == (1, 1, 192, 256) and bool((wide >= 0).all())


@needs_fastdepth
def test_teacher_init_student_maps_normalized_input_back_and_trains(tmp_path: Path) -> None:
    from depth_node.train.data import synthetic
    from depth_node.train.network import TeacherInitNet
    from depth_node.train.tflite_import import load_tflite_graph
    from depth_node.train.trainer import MEAN, STD, TrainConfig, build_student, to_tensor, train

    graph = load_tflite_graph(FASTDEPTH)
    student = TeacherInitNet(graph, MEAN, STD).eval()
    rgb = cv2.resize(_frames(1)[0], (256, 192), interpolation=cv2.INTER_AREA)
    with torch.no_grad():
        raw = graph(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)
        depth = student(to_tensor(rgb[None]))
    far = raw > 1.0  # softplus(β=10) + 1 mm equals ReLU there to well under a millimetre
    assert far.float().mean() > 0.5
    np.testing.assert_allclose(depth[far].numpy(), raw[far].numpy(), atol=2e-3)
    assert bool((depth > 0).all())

    frames = synthetic(4, 64, 64, seed=7)
    empty = type(frames)(frames.rgb[:0], frames.depth[:0], frames.kind[:0], [])
    cfg = TrainConfig(out=tmp_path / "out", train_dir=tmp_path, init="teacher", freeze_encoder=True, steps=4, batch=2, lr=3e-3,
                      width=64, height=64, seed=0, threads=2, log_every=2)
    assert type(build_student(cfg)).__name__ == "TeacherInitNet"
    result = train(cfg, say=lambda line: None, data=({"real": empty, "teacher": empty, "synthetic": frames}, {"synthetic": frames}))
    assert result.onnx_max_rel_diff < 1e-4 and set(result.initial) >= {"synthetic_affine_abs_rel"}
    assert "fine-tuned" in (tmp_path / "out" / "card.yaml").read_text()
    from safetensors.torch import load_file

    trained = load_file(str(tmp_path / "out" / "model.safetensors"))
    start = TeacherInitNet(load_tflite_graph(FASTDEPTH), MEAN, STD).state_dict()
    encoder = {name for name, p in student.named_parameters() if any(p is q for q in student.encoder_parameters())}
    assert encoder and all(torch.equal(trained[name], start[name]) for name in encoder)          # frozen: untouched
    assert any(not torch.equal(trained[name], start[name]) for name in start if name not in encoder)  # the decoder learnt
    with pytest.raises(ValueError, match="init must be"):
        build_student(TrainConfig(out=tmp_path, train_dir=tmp_path, init="imagenet"))


@needs_fastdepth
def test_keep_loss_holds_the_student_near_the_initial_network(tmp_path: Path) -> None:
    """--keep (learning without forgetting): the same few steps on real-kind samples move the student's predictions
    less from the initial network's with the keep loss on than off; a random start has nothing to keep."""
    from safetensors.torch import load_file

    from depth_node.train.data import METRIC, synthetic
    from depth_node.train.network import TeacherInitNet
    from depth_node.train.tflite_import import load_tflite_graph
    from depth_node.train.trainer import MEAN, STD, TrainConfig, to_tensor, train

    frames = synthetic(4, 64, 64, seed=11)
    frames.depth[:] = frames.depth * 3.0                     # labels that pull the student far from where it starts
    frames.kind[:] = METRIC
    empty = type(frames)(frames.rgb[:0], frames.depth[:0], frames.kind[:0], [])
    x = to_tensor(frames.rgb)
    with torch.no_grad():
        start = TeacherInitNet(load_tflite_graph(FASTDEPTH), MEAN, STD).eval()(x).log()
    moved = {}
    for keep in (0.0, 5.0):
        cfg = TrainConfig(out=tmp_path / f"k{keep}", train_dir=tmp_path, init="teacher", keep=keep, steps=6, batch=2, lr=3e-3,
                          width=64, height=64, seed=0, threads=2, log_every=6)
        train(cfg, say=lambda line: None, data=({"real": frames, "teacher": empty, "synthetic": empty}, {}))
        student = TeacherInitNet(load_tflite_graph(FASTDEPTH), MEAN, STD)
        student.load_state_dict(load_file(str(tmp_path / f"k{keep}" / "model.safetensors")))
        with torch.no_grad():
            moved[keep] = float((student.eval()(x).log() - start).abs().mean())
    assert moved[5.0] < 0.5 * moved[0.0], moved
    with pytest.raises(ValueError, match="nothing to keep"):
        train(TrainConfig(out=tmp_path / "s", train_dir=tmp_path, keep=1.0, steps=1, batch=2, width=64, height=64),
              say=lambda line: None, data=({"real": frames, "teacher": empty, "synthetic": empty}, {}))


@needs_fastdepth
def test_refiner_starts_as_the_teacher_and_learns_in_its_branch(tmp_path: Path) -> None:
    """--refiner: the correction branch starts at zero (the pair predicts what the teacher's network does), it trains,
    the export equals torch, and the confidence trainer rebuilds the pair from the card."""
    import onnxruntime

    from depth_node.train.data import synthetic
    from depth_node.train.network import ResidualRefiner, TeacherInitNet
    from depth_node.train.tflite_import import load_tflite_graph
    from depth_node.train.trainer import MEAN, STD, TrainConfig, build_student, keep_anchor, load_depth_network, to_tensor, train

    x = to_tensor(np.stack([cv2.resize(f, (128, 96), interpolation=cv2.INTER_AREA) for f in _frames(3)]))
    pair = build_student(TrainConfig(out=tmp_path, train_dir=tmp_path, init="teacher", refiner=True)).eval()
    assert isinstance(pair, ResidualRefiner)
    with torch.no_grad():
        np.testing.assert_allclose(pair(x).numpy(), TeacherInitNet(load_tflite_graph(FASTDEPTH), MEAN, STD).eval()(x).numpy(), rtol=1e-5)

    frames = synthetic(4, 64, 64, seed=7)
    empty = type(frames)(frames.rgb[:0], frames.depth[:0], frames.kind[:0], [])
    cfg = TrainConfig(out=tmp_path / "out", train_dir=tmp_path, init="teacher", refiner=True, steps=4, batch=2, lr=3e-3,
                      width=64, height=64, seed=0, threads=2, log_every=4)
    result = train(cfg, say=lambda line: None, data=({"real": empty, "teacher": empty, "synthetic": frames}, {}))
    assert result.onnx_max_rel_diff < 1e-4
    loaded, card = load_depth_network(tmp_path / "out" / "card.yaml")
    assert card["training"]["refiner"] is True and "correction branch" in card["description"]
    assert float(loaded.branch.head.weight.abs().sum()) > 0  # the branch learnt
    session = onnxruntime.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {"image": x.numpy()})[0], loaded(x).numpy(), rtol=1e-4)
    frozen = TrainConfig(out=tmp_path / "frozen", train_dir=tmp_path, init="teacher", refiner=True, freeze_base=True, steps=2,
                         batch=2, lr=3e-3, width=64, height=64, seed=0, threads=2, log_every=2)
    train(frozen, say=lambda line: None, data=({"real": empty, "teacher": empty, "synthetic": frames}, {}))
    trained, _ = load_depth_network(tmp_path / "frozen" / "card.yaml")
    start = TeacherInitNet(load_tflite_graph(FASTDEPTH), MEAN, STD).state_dict()
    assert all(torch.equal(trained.base.state_dict()[name], value) for name, value in start.items())  # --freeze-base
    assert float(trained.branch.head.weight.abs().sum()) > 0
    anchor = keep_anchor(trained)  # --keep holds real images to the base network, not to the branch's corrections
    with torch.no_grad():
        np.testing.assert_array_equal(anchor(x).numpy(), trained.base(x).numpy())
        assert not np.allclose(anchor(x).numpy(), trained(x).numpy(), rtol=1e-4)
    assert not any(p.requires_grad for p in anchor.parameters())
    later = TrainConfig(out=tmp_path / "later", train_dir=tmp_path, init=str(tmp_path / "frozen" / "card.yaml"), freeze_base=True,
                        keep=1.0, steps=2, batch=2, lr=3e-3, width=64, height=64, seed=1, threads=2, log_every=2)
    train(later, say=lambda line: None, data=({"real": frames, "teacher": empty, "synthetic": frames}, {}))
    stage2, card = load_depth_network(tmp_path / "later" / "card.yaml")  # a second stage of the frozen-base branch
    assert all(torch.equal(stage2.base.state_dict()[name], value) for name, value in start.items())
    assert not torch.equal(stage2.branch.head.weight, trained.branch.head.weight)
    assert card["training"]["previous"]["refiner"] is True and "correction branch" in card["description"]
    # the other branch: a copy of the network with a new zero head on its last feature map
    copy_cfg = TrainConfig(out=tmp_path / "copy", train_dir=tmp_path, init="teacher", refiner=True, refiner_branch="teacher",
                           freeze_base=True, steps=2, batch=2, lr=3e-3, width=64, height=64, seed=0, threads=2, log_every=2)
    with torch.no_grad():
        np.testing.assert_allclose(build_student(copy_cfg).eval()(x).numpy(), TeacherInitNet(load_tflite_graph(FASTDEPTH), MEAN, STD).eval()(x).numpy(), rtol=1e-6)
    assert train(copy_cfg, say=lambda line: None, data=({"real": empty, "teacher": empty, "synthetic": frames}, {})).onnx_max_rel_diff < 1e-4
    copied, card = load_depth_network(tmp_path / "copy" / "card.yaml")
    assert copied.kind == "teacher" and "a copy of that network" in card["description"] and float(copied.head.weight.abs().sum()) > 0
    assert all(torch.equal(copied.base.state_dict()[name], value) for name, value in start.items())
    session = onnxruntime.InferenceSession(str(tmp_path / "copy" / "model.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {"image": x.numpy()})[0], copied(x).numpy(), rtol=1e-4)
    with pytest.raises(ValueError, match="use it with --init teacher"):
        build_student(TrainConfig(out=tmp_path, train_dir=tmp_path, refiner=True))
    with pytest.raises(ValueError, match="tiny or teacher"):
        TrainConfig(out=tmp_path, train_dir=tmp_path, init="teacher", refiner=True, refiner_branch="big").check()
    with pytest.raises(ValueError, match="give --refiner too"):
        TrainConfig(out=tmp_path, train_dir=tmp_path, init="teacher", refiner_branch="teacher").check()
    with pytest.raises(ValueError, match="needs --refiner"):
        TrainConfig(out=tmp_path, train_dir=tmp_path, init="teacher", freeze_base=True).check()


def _tiny_expert(tmp_path: Path) -> tuple:
    """A 3-step run from the teacher on four rendered frames (the expert, card in tmp_path/expert), the frames, an empty
    source, the expert's network, and the frames labelled with the expert's own predictions (a gate should pick it)."""
    from depth_node.train.data import METRIC, synthetic
    from depth_node.train.trainer import TrainConfig, load_depth_network, to_tensor, train

    frames = synthetic(4, 64, 64, seed=5)
    empty = type(frames)(frames.rgb[:0], frames.depth[:0], frames.kind[:0], [])
    expert_cfg = TrainConfig(out=tmp_path / "expert", train_dir=tmp_path, init="teacher", steps=3, batch=2, lr=3e-3, width=64,
                             height=64, seed=0, threads=2, log_every=3)
    train(expert_cfg, say=lambda line: None, data=({"real": empty, "teacher": empty, "synthetic": frames}, {}))
    expert, _ = load_depth_network(tmp_path / "expert" / "card.yaml")
    with torch.no_grad():
        labels = expert(to_tensor(frames.rgb))[:, 0].numpy()
    agree = type(frames)(frames.rgb, labels.astype(np.float32), np.full(len(frames), METRIC, np.int8), frames.names)
    return frames, empty, expert, agree


@needs_fastdepth
def test_expert_blend_starts_at_an_even_blend_and_its_gate_learns_where_to_trust_the_expert(tmp_path: Path) -> None:
    """--expert: an earlier run's network beside the teacher's, blended per pixel by a gate that starts at an even blend
    in log space (the geometric mean of the two depths); with --freeze-base only the gate trains; labels that are the
    expert's own predictions move the gate towards it; the card rebuilds the pair without the expert's card; ONNX = torch."""
    import shutil

    import onnxruntime

    from depth_node.train.network import ExpertBlend, TeacherInitNet
    from depth_node.train.tflite_import import load_tflite_graph
    from depth_node.train.trainer import MEAN, STD, TrainConfig, build_student, keep_anchor, load_depth_network, to_tensor, train

    frames, empty, expert, agree = _tiny_expert(tmp_path)
    teacher = TeacherInitNet(load_tflite_graph(FASTDEPTH), MEAN, STD).eval()

    x = to_tensor(np.stack([cv2.resize(f, (128, 96), interpolation=cv2.INTER_AREA) for f in _frames(3)]))
    blend = build_student(TrainConfig(out=tmp_path, train_dir=tmp_path, init="teacher", expert=str(tmp_path / "expert" / "card.yaml"))).eval()
    assert isinstance(blend, ExpertBlend)
    with torch.no_grad():
        d_teacher, d_expert = teacher(x).numpy(), expert(x).numpy()
        assert np.abs(np.log(d_expert / d_teacher)).mean() > 0.01  # the expert learnt something: the blend is not trivially either
        np.testing.assert_allclose(blend(x).numpy(), np.sqrt(d_teacher * d_expert), rtol=1e-5)

    # labels = the expert's predictions: the gate alone trains, and shifts towards the expert
    cfg = TrainConfig(out=tmp_path / "blend", train_dir=tmp_path, init="teacher", expert=str(tmp_path / "expert" / "card.yaml"),
                      freeze_base=True, steps=30, batch=2, lr=1e-2, width=64, height=64, seed=0, threads=2, log_every=30)
    result = train(cfg, say=lambda line: None, data=({"real": empty, "teacher": empty, "synthetic": agree}, {}))
    assert result.onnx_max_rel_diff < 1e-4
    # --gate-scale: one log-scale per image from the gate, starting at 0, learns a global factor both networks lack
    farther = type(frames)(frames.rgb, agree.depth * 1.5, agree.kind, frames.names)
    scaled = TrainConfig(out=tmp_path / "scaled", train_dir=tmp_path, init="teacher", expert=str(tmp_path / "expert" / "card.yaml"),
                         gate_scale=True, freeze_base=True, steps=30, batch=2, lr=1e-2, width=64, height=64, seed=0, threads=2, log_every=30)
    with torch.no_grad():
        np.testing.assert_allclose(build_student(scaled).eval()(x).numpy(), np.sqrt(d_teacher * d_expert), rtol=1e-5)
    assert train(scaled, say=lambda line: None, data=({"real": empty, "teacher": empty, "synthetic": farther}, {})).onnx_max_rel_diff < 1e-4
    gained, card = load_depth_network(tmp_path / "scaled" / "card.yaml")
    with torch.no_grad():
        x_train = to_tensor(frames.rgb)
        _, log_scale = gained.weight_and_scale(x_train, gained.base.log_depth(x_train), gained.expert.log_depth(x_train))
    assert card["training"]["gate_scale"] is True and float(log_scale.mean()) > 0.5 * np.log(1.5), float(log_scale.mean())
    with pytest.raises(ValueError, match="give --expert too"):
        TrainConfig(out=tmp_path, train_dir=tmp_path, init="teacher", gate_scale=True).check()
    shutil.rmtree(tmp_path / "expert")  # the card holds the expert's recipe, the safetensors its weights
    trained, card = load_depth_network(tmp_path / "blend" / "card.yaml")
    assert card["training"]["expert_network"]["steps"] == 3 and "blended per pixel" in card["description"]
    assert "the gate alone trained" in card["description"]
    for name, value in teacher.state_dict().items():
        assert torch.equal(trained.base.state_dict()[name], value)  # --freeze-base: both networks as they were
    for name, value in expert.state_dict().items():
        assert torch.equal(trained.expert.state_dict()[name], value)
    with torch.no_grad():
        x_train = to_tensor(frames.rgb)
        base, other = trained.base.log_depth(x_train), trained.expert.log_depth(x_train)
        share = float(trained.weight(x_train, base, other).mean())
    assert share > 0.6, share
    session = onnxruntime.InferenceSession(str(tmp_path / "blend" / "model.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {"image": x.numpy()})[0], trained(x).numpy(), rtol=1e-4)
        np.testing.assert_array_equal(keep_anchor(trained)(x).numpy(), trained.base(x).numpy())  # --keep holds real images to the base

    with pytest.raises(ValueError, match="use it with --init teacher"):
        TrainConfig(out=tmp_path, train_dir=tmp_path, expert=str(tmp_path / "blend" / "card.yaml")).check()
    with pytest.raises(ValueError, match="without --refiner"):
        TrainConfig(out=tmp_path, train_dir=tmp_path, init="teacher", refiner=True, expert=str(tmp_path / "blend" / "card.yaml")).check()
    with pytest.raises(ValueError, match="no such card"):
        TrainConfig(out=tmp_path, train_dir=tmp_path, init="teacher", expert=str(tmp_path / "expert" / "card.yaml")).check()
    TrainConfig(out=tmp_path, train_dir=tmp_path, init=str(tmp_path / "blend" / "card.yaml"), freeze_base=True).check()  # a later stage


@needs_fastdepth
def test_per_image_gate_blends_whole_maps_and_learns_to_take_the_expert(tmp_path: Path) -> None:
    """--gate image: one share per image (the same for every pixel, and for an image alone or in any batch: no batch
    statistics), an even blend at the start of training; in use it chooses one network's map per image (logit > 0: the
    expert's), placed at the soft blend's image-mean log-depth; trained on labels that are the expert's predictions it chooses the expert; the card says so and rebuilds
    it; ONNX = torch; without --expert the option is refused."""
    import onnxruntime

    from depth_node.train.network import ExpertBlend, ImageGate
    from depth_node.train.trainer import TrainConfig, build_student, load_depth_network, to_tensor, train

    frames, empty, expert, agree = _tiny_expert(tmp_path)
    cfg = TrainConfig(out=tmp_path / "blend", train_dir=tmp_path, init="teacher", expert=str(tmp_path / "expert" / "card.yaml"),
                      gate="image", freeze_base=True, steps=30, batch=2, lr=1e-2, width=64, height=64, seed=0, threads=2, log_every=30)
    x = to_tensor(frames.rgb)
    start = build_student(cfg)
    assert isinstance(start, ExpertBlend) and isinstance(start.gate, ImageGate)
    def shape_and_level(log_depth: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        level = log_depth.mean(dim=(2, 3), keepdim=True)
        return (log_depth - level).numpy(), level.flatten().numpy()

    with torch.no_grad():  # training blends (an even blend at the start); in use a logit of 0 keeps the base's map
        even = np.sqrt(start.base(x).numpy() * expert(x).numpy())
        np.testing.assert_allclose(start.train()(x).numpy(), even, rtol=1e-5)
        shape, level = shape_and_level(start.eval().log_depth(x))
        np.testing.assert_allclose(shape, shape_and_level(start.base.log_depth(x))[0], atol=1e-5)
        np.testing.assert_allclose(level, np.log(even).mean(axis=(1, 2, 3)), atol=1e-5)  # at the blend's level
    result = train(cfg, say=lambda line: None, data=({"real": empty, "teacher": empty, "synthetic": agree}, {}))
    assert result.onnx_max_rel_diff < 1e-4
    trained, card = load_depth_network(tmp_path / "blend" / "card.yaml")
    assert card["training"]["gate"] == "image" and "chosen per image" in card["description"]
    assert isinstance(trained.gate, ImageGate)
    with torch.no_grad():
        base, other = trained.base.log_depth(x), trained.expert.log_depth(x)
        chosen, blended = trained.log_depth(x), trained.train().log_depth(x)
        # (still in train mode, as in training: a batch-norm gate would normalize each image by its batch's statistics)
        share = trained.weight(x, base, other)
        alone = trained.weight(x[1:2], base[1:2], other[1:2])
    assert share.shape == (len(frames), 1, 1, 1) and float(share.min()) > 0.6, share.flatten()
    assert float(alone) == pytest.approx(float(share[1]), abs=1e-6)  # a share of its own, whatever shares the batch
    shape, level = shape_and_level(chosen)  # in use: the expert's whole map, not a mix, at the soft blend's level
    np.testing.assert_allclose(shape, shape_and_level(other)[0], atol=1e-5)
    np.testing.assert_allclose(level, shape_and_level(blended)[1], atol=1e-5)
    assert np.abs(shape - shape_and_level(base)[0]).max() > 1e-3  # (the two maps differ: the choice is visible)
    trained.eval()
    session = onnxruntime.InferenceSession(str(tmp_path / "blend" / "model.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {"image": x.numpy()})[0], trained(x).numpy(), rtol=1e-4)
    with pytest.raises(ValueError, match="give --expert too"):
        TrainConfig(out=tmp_path, train_dir=tmp_path, init="teacher", gate="image").check()
    with pytest.raises(ValueError, match="--gate is one of pixel, image"):
        TrainConfig(out=tmp_path, train_dir=tmp_path, init="teacher", expert=str(tmp_path / "expert" / "card.yaml"), gate="region").check()
