"""The depth node: a thin rclpy shell around :class:`depth_node.core.pipeline.DepthPipeline`.

Subscribes (relative names, remap them):
  ``image`` (sensor_msgs/Image) or ``image/compressed`` (sensor_msgs/CompressedImage), per ``input_transport``;
  ``camera_info`` (sensor_msgs/CameraInfo); for ``scale.mode`` sparse, paired by stamp within ``scale.reference_slop_s``,
  ``reference_depth`` (sensor_msgs/Image, 16UC1 mm or 32FC1 m, any resolution with the camera's field of view) or, with
  ``scale.reference`` points, ``reference_points`` (sensor_msgs/PointCloud2, e.g. a LiDAR: projected into the camera
  through ``scale.reference_extrinsic``, or tf2_ros where a ROS distro provides it). Sensor-data QoS (best effort).
Publishes (each built only while it has a subscriber; header = the input image's):
  ``depth/image`` (32FC1 m, NaN no estimate, ±Inf out of range per REP 117 | 16UC1 mm, 0 no value), ``depth/camera_info`` (rescaled to the depth grid),
  ``depth/confidence`` (32FC1 in [0, 1]), ``depth/points`` (organized PointCloud2), ``depth/colorized`` (rgb8),
  and ``/diagnostics`` at ``diagnostics_period_s``.

Threads: subscription callbacks only store the newest frame; one worker thread converts, runs the model and
publishes. A frame that arrives while the worker is busy replaces the waiting one and is counted as dropped.
"""

from __future__ import annotations

import copy
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.lifecycle import State as LifecycleState
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

try:  # a ROS distro's tf2 (no wheel exists): the reference cloud's extrinsic from /tf, as robots publish it
    import tf2_ros
except ImportError:
    tf2_ros = None

from depth_node import stop_signals
from depth_node.core.camera import PinholeCamera
from depth_node.core.estimator import DepthEstimator
from depth_node.core.lidar import project_points
from depth_node.core.transforms import RigidTransform
from depth_node.core.parameters import (
    PARAMS,
    PARAMS_BY_NAME,
    Param,
    ParameterError,
    PipelineConfig,
    coerce,
    resolve,
)
from depth_node.core.parallel import together
from depth_node.core.pipeline import DepthPipeline
from depth_node.core.timing import StageTimer
from depth_node.errors import ConfigError, InputError, ModelLoadError
from depth_node.estimators.registry import backend_attempts, load_model
from depth_node.ros import arguments, cdr, convert
from depth_node.ros.allocator import keep_frame_buffers_mapped
from depth_node.ros.diagnostics import (
    ERROR,
    WARN,
    FrameStats,
    WarningBoard,
    build_status,
)
from depth_node.ros.outputs import OUTPUTS, OutputMessages
from depth_node.ros.serialized_publisher import SerializedPublisher
from depth_node.ros.sync import LAST, MATCHED, NONE, StampedCache, stamp_ns

# Every input and output takes `qos_overrides./<topic>.<subscription|publisher>.<policy>` parameters (read at start).
# rclpy writes the overrides into the profile it is given: each entity gets its own copy (see _qos).
QOS_OVERRIDES = QoSOverridingOptions.with_default_policies()
INPUT_QOS = QoSProfile(depth=1, reliability=qos_profile_sensor_data.reliability, history=qos_profile_sensor_data.history)
OUTPUT_QOS = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
STARTUP_GRACE_S = 1.0  # how long to wait for a first camera_info before falling back to fallback_hfov_deg
FAILURES_BEFORE_FALLBACK = 3  # frames failing in a row before the next backend_fallback entry is loaded
# A frame running longer than this many times the slowest usual frame (p95), and at least STALL_MIN_S, is a WARN on
# /diagnostics: a model far slower than expected on this device, or a runtime that hangs.
STALL_FACTOR = 5.0
STALL_MIN_S = 10.0
WORKER_JOIN_S = 2.0  # on stop: how long to wait for a frame to finish (a forward pass cannot be interrupted)


def _descriptor(param: Param) -> ParameterDescriptor:
    text = param.doc + (f" Unit: {param.unit}." if param.unit else "")
    if param.choices:
        text += f" One of: {', '.join(param.choices)}."
    descriptor = ParameterDescriptor(description=text, read_only=not param.dynamic)
    if param.range is not None and param.kind == "integer":
        descriptor.integer_range = [IntegerRange(from_value=int(param.range[0]), to_value=int(param.range[1]), step=0)]
    elif param.range is not None and param.kind == "double":
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(param.range[0]), to_value=float(param.range[1]), step=0.0)]
    return descriptor


def _qos(profile: QoSProfile) -> QoSProfile:
    """A copy of ``profile`` for one entity: QoS overrides must not change the shared constants."""
    return copy.copy(profile)


def _as_declared(params: list[Parameter]) -> list[Parameter]:
    """``ros2 param set`` of an integer for a double parameter (``max_range 5``): the double 5.0, as users mean it."""
    out = []
    for param in params:
        spec = PARAMS_BY_NAME.get(param.name)
        if spec is not None and spec.kind in ("double", "double array"):
            try:
                param = Parameter(param.name, value=coerce(spec, param.value) if spec.kind == "double" else list(coerce(spec, param.value)))
            except ParameterError:
                pass  # left as it is: the type check says what is wrong
        out.append(param)
    return out


class _DepthNodeBody:
    """What the plain node and the managed (lifecycle) node share. Parameters are declared at construction (so
    ``ros2 param`` works in every state); then the lifecycle's steps:

    configure   load the model (the first of backend, backend_fallback that loads; ModelLoadError when none does),
                build the pipeline, create the publishers
    activate    subscriptions, the diagnostics timer, the worker thread
    deactivate  the reverse of activate: nothing is received, computed or published
    cleanup     the reverse of configure: publishers and the model released
    """

    def _declare(self, origins: dict[str, str] | None) -> None:
        origins = origins or {}
        overrides = [(origins.get(name, "parameter override"), {name: p.value}) for name, p in self._parameter_overrides.items()]
        self.config: PipelineConfig = resolve(overrides)  # the node's parameters, checked as every tool checks them
        for spec in PARAMS:
            value = getattr(self.config, spec.field)
            self.declare_parameter(spec.name, list(value) if isinstance(value, tuple) else value, _descriptor(spec),
                                   ignore_override=True)
        self.add_pre_set_parameters_callback(_as_declared)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.stats = FrameStats()
        self.warnings = WarningBoard()
        self.estimator: DepthEstimator | None = None
        self.pipeline: DepthPipeline | None = None
        self.publishers_by_output: dict[str, Any] = {}
        self._senders: dict[str, SerializedPublisher] = {}  # the same publishers, publishing CDR from its buffer
        self.pub_diagnostics: Any = None
        self._attempt = 0            # index into backend_attempts of the loaded backend
        self._last_stamp_ns: int | None = None
        self._failures_in_a_row = 0
        self._cache = StampedCache()
        self._reference = StampedCache(capacity=8)
        self._scale_state: Any = None
        self._pending: tuple[Any, float] | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()  # the running worker's; each worker gets its own
        self._worker: threading.Thread | None = None
        self._running: tuple[float, StageTimer] | None = None  # (monotonic start, timer) of the frame being computed
        self._inputs: list[Any] = []
        self.sub_reference: Any = None  # only while scale.mode is sparse
        self._tf_buffer: Any = None     # tf2_ros, for reference_points without scale.reference_extrinsic
        self._tf_listener: Any = None
        self._timer: Any = None
        self._first_frame_s: float | None = None
        self._warned_fallback = False
        self._warned_distortion = False
        self._geometry = convert.InputGeometry()
        self._last_start = 0.0
        self._camera_source = NONE

    def _configure(self) -> None:
        """Load the model and create the publishers; raises :class:`ModelLoadError` (nothing is kept then)."""
        self._load_model(self.config)
        self.publishers_by_output = {name: self.create_publisher(msg_type, topic, _qos(OUTPUT_QOS), qos_overriding_options=QOS_OVERRIDES)
                                     for name, (topic, msg_type) in OUTPUTS.items()}
        self._senders = {name: SerializedPublisher(publisher) for name, publisher in self.publishers_by_output.items()}
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

    def _activate(self) -> None:
        compressed = self._compressed_input = self.config.input_transport == "compressed"
        # raw: the callback gets the CDR bytes, read in the worker by ros/cdr.py with the pixels a view of them (rclpy
        # would first convert every byte into a Python message)
        self.sub_image = self.create_subscription(CompressedImage if compressed else Image, "image/compressed" if compressed else "image",
                                                  self._on_image, _qos(INPUT_QOS), qos_overriding_options=QOS_OVERRIDES, raw=True)
        self.sub_info = self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, _qos(qos_profile_sensor_data),
                                                 qos_overriding_options=QOS_OVERRIDES)
        self._inputs = [self.sub_image, self.sub_info]
        self._timer = self.create_timer(self.config.diagnostics_period_s, self.publish_diagnostics)
        self._follow_scale_mode()
        self._stop = threading.Event()  # a new one: a worker still finishing its last frame keeps its own, set
        self._worker = threading.Thread(target=self._work, args=(self._stop,), name="depth_node_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"subscribed to {self.sub_image.topic_name} ({self.config.input_transport}) and "
            f"{self.sub_info.topic_name}; model: {self._model_summary()}"
        )

    def _follow_scale_mode(self) -> None:
        """Subscribe to ``reference_depth`` (or ``reference_points``, per ``scale.reference``) exactly while
        ``scale.mode`` is sparse (and the node is active)."""
        wanted = self.config.scale_mode == "sparse" and self._timer is not None
        msg_type, topic = (PointCloud2, "reference_points") if self.config.scale_reference == "points" else (Image, "reference_depth")
        if self.sub_reference is not None and (not wanted or self.sub_reference.msg_type is not msg_type):
            self.destroy_subscription(self.sub_reference)
            self.sub_reference = None
            self._reference = StampedCache(capacity=8)  # the other topic's messages are no reference for this one
        if wanted and self.sub_reference is None:
            self.sub_reference = self.create_subscription(msg_type, topic, self._reference.add, _qos(qos_profile_sensor_data),
                                                          qos_overriding_options=QOS_OVERRIDES)
            if msg_type is PointCloud2:
                self.get_logger().info(f"scale.mode sparse: reference cloud {self.sub_reference.topic_name}, extrinsic "
                                       f"from {self._extrinsic_source()}")

    def _deactivate(self) -> None:
        for subscription in [*self._inputs, self.sub_reference]:
            if subscription is not None:
                self.destroy_subscription(subscription)
        self.sub_reference = None
        if self._timer is not None:
            self.destroy_timer(self._timer)
        self._inputs, self._timer = [], None
        self.close()
        with self._cond:
            self._pending = None

    def _cleanup(self) -> None:
        for publisher in [*self.publishers_by_output.values(), self.pub_diagnostics]:
            if publisher is not None:
                self.destroy_publisher(publisher)
        self.publishers_by_output, self._senders, self.pub_diagnostics = {}, {}, None
        self.estimator = self.pipeline = None
        self._attempt = 0

    # ----------------------------------------------------------------- model and parameters
    def _load_model(self, config: PipelineConfig) -> None:
        """Load the card on backend/device, else on each backend_fallback entry in order (reported as WARN);
        raises :class:`ModelLoadError` when none loads."""
        self.estimator, failures, self._attempt = load_model(config)
        if failures:
            message = f"running on fallback {self.estimator.backend}:{self.estimator.device} because " + " | ".join(failures)
            self.warnings.raise_("backend_fallback", message, WARN, sticky=True)
            self.get_logger().warning(message)
        if config.precision != self.estimator.precision:
            message = (f"precision {config.precision} is not what {self.estimator.backend} runs: it runs this model in "
                       f"{self.estimator.precision}; backend torch runs fp16/bf16, tensorrt fp16")
            self.warnings.raise_("precision", message, WARN, sticky=True)
            self.get_logger().warning(message)
        problem = self._install_pipeline(config)
        if problem:
            self.get_logger().error(f"model loaded, but publishing nothing until the parameters fit it: {problem}")

    def _fall_back(self, reason: str) -> None:
        """Frames keep failing on the loaded backend: load the next ``backend_fallback`` entry, if any is left
        (once running, the node keeps running and reporting ERROR either way: it never exits on its own)."""
        if self._attempt + 1 >= len(backend_attempts(self.config)) or self.pipeline is None:
            return
        failed = self.estimator
        try:
            estimator, failures, attempt = load_model(self.config, start=self._attempt + 1)
        except ModelLoadError as exc:
            self._attempt = len(backend_attempts(self.config))  # nothing left: stay on the failing one
            self.get_logger().error(f"no backend_fallback entry loads: {exc}")
            return
        config = self.pipeline.config
        self.estimator, self._attempt = estimator, attempt
        self._install_pipeline(config)
        self._failures_in_a_row = 0
        message = (f"running on fallback {estimator.backend}:{estimator.device}: {failed.backend}:{failed.device} failed "
                   f"{FAILURES_BEFORE_FALLBACK} frames in a row ({reason})" + "".join(f" | {f}" for f in failures))
        self.warnings.clear("processing")
        self.warnings.raise_("backend_fallback", message, WARN, sticky=True)
        self.get_logger().warning(message)

    def _install_pipeline(self, config: PipelineConfig) -> str | None:
        """Build the pipeline for the loaded estimator; on a mismatch (e.g. a relative model with scale.mode
        model) keep the ERROR up and return why, so a later parameter change can still fix it."""
        try:
            self.pipeline = DepthPipeline(self.estimator, config)
        except ConfigError as exc:
            self.warnings.raise_("model", str(exc), ERROR, sticky=True)
            return str(exc)
        self.warnings.clear("model")
        return None

    def _model_summary(self) -> str:
        est = self.estimator
        if est is None:
            return "NOT LOADED (see /diagnostics)"
        return f"{est.name} ({est.output.describe()}) on {est.backend}/{est.device}"

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        if not any(p.name in PARAMS_BY_NAME for p in params):
            return SetParametersResult(successful=True)  # use_sim_time, qos_overrides.* (declared by rclpy)
        for param in params:
            spec = PARAMS_BY_NAME.get(param.name)
            if spec is not None and not spec.dynamic:
                return SetParametersResult(successful=False, reason=f"{param.name} is read-only at run time: restart the node to change it")
        try:
            config = resolve([("", {p.name: p.value for p in params})], base=self.config)  # the start-up checks
            if self.pipeline is not None:
                self.pipeline.config = config  # also checks the model's output space
            elif self.estimator is not None:
                self._install_pipeline(config)  # may fix a model/parameter mismatch from start-up
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.config = config
        self._follow_scale_mode()
        return SetParametersResult(successful=True)

    # ----------------------------------------------------------------- input
    def _on_image(self, msg: Any) -> None:
        now = time.monotonic()
        self.stats.count("received", now)
        with self._cond:
            if self._pending is not None:
                self.stats.count("dropped")
            self._pending = (msg, now)
            self._cond.notify()

    def _on_camera_info(self, msg: Any) -> None:
        try:
            self._cache.add(convert.check_camera_info(msg))
        except InputError as exc:  # not kept: a bad camera_info must not sit in the cache (nor pass as a good one)
            self.stats.count("bad_input")
            self.warnings.raise_("bad_input", f"{self.sub_info.topic_name}: {exc}")
            self.get_logger().warning(f"camera_info dropped: {exc}", throttle_duration_sec=5.0)

    def _camera_for(self, header: Any, rgb: np.ndarray, timer: StageTimer) -> tuple[np.ndarray, PinholeCamera, Any | None] | None:
        """The image in the rectified geometry (``camera_model``), its intrinsics and the camera_info they came
        from; None = skip this frame for now."""
        height, width = rgb.shape[:2]
        config = self.config
        slop_ns = int(config.sync_slop_s * 1e9)
        info = None
        if self._cache.received:
            info = self._cache.wait_nearest(stamp_ns(header.stamp), slop_ns, timeout_s=min(config.sync_slop_s, 0.2))
            self._camera_source = MATCHED
            if info is None:
                if not config.use_last_camera_info:
                    raise InputError(
                        f"no camera_info within sync_slop_s={config.sync_slop_s} s of the image stamp: raise "
                        "sync_slop_s or set use_last_camera_info: true"
                    )
                info = self._cache.latest()
                self._camera_source = LAST
            self.warnings.clear("camera_info")
            with timer.stage("rectify"):
                rgb, camera, ignored = self._geometry(rgb, info, config.camera_model)
            if ignored and not self._warned_distortion:
                self._warned_distortion = True
                self.get_logger().warning(
                    f"camera_info on {self.sub_info.topic_name} has distortion D = {[round(float(v), 4) for v in info.d]}, "
                    "which camera_model: rectified does not apply (right for image_rect, whose camera_info is the raw "
                    "image's; for image_raw set camera_model: raw)")
            return rgb, camera, info
        # No camera_info ever: give the driver a moment, then fall back to an assumed field of view.
        if time.monotonic() - (self._first_frame_s or 0.0) < STARTUP_GRACE_S:
            return None
        hfov = config.fallback_hfov_deg
        topic = self.sub_info.topic_name
        if hfov <= 0:
            self.warnings.raise_("camera_info", f"no camera_info on {topic}; waiting (fallback_hfov_deg is 0)")
            return None
        if not self._warned_fallback:
            self.get_logger().warning(
                f"no camera_info received on {topic}: assuming a pinhole camera with hfov {hfov} deg. "
                "Depth scale and cloud geometry are approximate until camera_info arrives."
            )
            self._warned_fallback = True
        self.warnings.raise_("camera_info", f"no camera_info on {topic}; using fallback_hfov_deg={hfov}")
        self._camera_source = "fallback_hfov"
        return rgb, PinholeCamera.from_hfov(width, height, hfov), None

    def _check_stamp(self, stamp: int, pipeline: DepthPipeline) -> None:
        """Stamps going backwards (a bag looping, a clock jump, two cameras on one topic): still processed, but
        the frame-to-frame state (temporal smoothing) restarts and a WARN says so."""
        last, self._last_stamp_ns = self._last_stamp_ns, stamp
        if last is not None and stamp < last:
            pipeline.reset_temporal()
            self.warnings.raise_("stamps", f"image stamps went backwards by {(last - stamp) / 1e9:.3f} s (a bag restarted, "
                                           "a clock jump, or two cameras on one topic?): temporal state reset")

    def _reference_for(self, header: Any, camera: PinholeCamera) -> Any | None:
        """This frame's reference depth in metres (NaN invalid) — the reference image, or the reference cloud
        projected onto ``camera``'s grid — or None (the scale is then held)."""
        slop_s = self.config.scale_reference_slop_s
        msg = self._reference.wait_nearest(stamp_ns(header.stamp), int(slop_s * 1e9), timeout_s=min(slop_s, 0.2))
        topic = self.sub_reference.topic_name
        if msg is None:
            what = "no message yet" if not self._reference.received else f"none within scale.reference_slop_s={slop_s} s"
            self.warnings.raise_("reference_depth", f"scale.mode sparse: {what} on {topic}")
            return None
        try:
            if isinstance(msg, PointCloud2):
                points = convert.cloud_to_points(msg, topic)
                return project_points(points, camera, self._camera_from_cloud(msg, header)).depth_m
            return convert.depth_image_to_metres(msg, topic)
        except InputError as exc:
            self.warnings.raise_("reference_depth", f"{topic}: {exc}")
            return None

    def _extrinsic_source(self) -> str:
        if any(self.config.scale_reference_extrinsic):
            return "scale.reference_extrinsic"
        return "tf2_ros (/tf, /tf_static)" if tf2_ros is not None else "nowhere: set scale.reference_extrinsic (no tf2_ros here)"

    def _camera_from_cloud(self, cloud: Any, header: Any) -> RigidTransform:
        """The reference cloud's frame → the image's optical frame: the parameter, else tf2_ros at the cloud's stamp."""
        given = self.config.scale_reference_extrinsic
        if any(given):
            return RigidTransform.from_xyz_quaternion(*given)
        if tf2_ros is None:
            raise InputError("no extrinsic for the reference cloud: set scale.reference_extrinsic [x, y, z, qx, qy, qz, qw] "
                             "(the cloud's frame in the camera's optical frame; tf2_ros is not installed to look it up)")
        if self._tf_buffer is None:
            self._tf_buffer = tf2_ros.Buffer()
            self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)
        try:
            stamped = self._tf_buffer.lookup_transform(header.frame_id, cloud.header.frame_id, cloud.header.stamp)
        except Exception as exc:  # noqa: BLE001 - tf2's lookup, connectivity and extrapolation errors alike
            raise InputError(f"tf2 has no transform {cloud.header.frame_id} → {header.frame_id} at the cloud's stamp "
                             f"({exc}); or set scale.reference_extrinsic") from None
        return convert.transform_of(stamped)

    def _report_scale(self, state: Any) -> None:
        self._scale_state = state
        if state is None or state.source in ("model", "fixed"):
            return
        if not state.ok:
            self.warnings.raise_("scale", f"no metric scale yet, publishing NaN depth: {state.message}")
        elif state.held:
            self.warnings.raise_("scale", f"holding the last scale for {state.frames_held} frame(s): {state.message}")
        else:
            self.warnings.clear("scale")
            self.warnings.clear("reference_depth")

    def _report_model_output(self, result: Any) -> None:
        """A model that returns NaN/Inf (damaged weights, fp16 overflow) or NaN confidence is a fault to show on
        /diagnostics, not a frame to call fine (those pixels are published as NaN depth / 0 confidence)."""
        where = f"model {self.estimator.name} on {self.estimator.backend}/{self.estimator.device}"
        if result.model_invalid >= 1.0:
            self.warnings.raise_("model_output", f"{where} returned NaN/Inf on every pixel: publishing NaN depth "
                                                 "(damaged weights? with precision fp16/bf16, try fp32)", ERROR)
        elif result.model_invalid > 0:
            self.warnings.raise_("model_output", f"{where} returned NaN/Inf on {100 * result.model_invalid:.1f} % of the "
                                                 "pixels: published as NaN depth there")
        if result.confidence_invalid > 0:
            self.warnings.raise_("confidence", f"{where}: confidence NaN on {100 * result.confidence_invalid:.1f} % of the "
                                               "valid depth pixels, published as 0")

    # ----------------------------------------------------------------- worker
    def _take(self, stop: threading.Event) -> tuple[Any, float] | None:
        with self._cond:
            while self._pending is None and not stop.is_set():
                self._cond.wait(timeout=0.5)
            if stop.is_set():
                return None
            item, self._pending = self._pending, None
            return item

    def _work(self, stop: threading.Event) -> None:
        while True:
            item = self._take(stop)
            if item is None:
                return
            msg, received = item
            max_rate = self.config.max_rate_hz
            if max_rate > 0 and received - self._last_start < 1.0 / max_rate:
                self.stats.count("throttled")
                continue
            self._last_start = received
            timer = StageTimer()
            running = self._running = (time.monotonic(), timer)
            try:
                self._process(msg, received, timer, stop)
                if self._failures_in_a_row:
                    self._failures_in_a_row = 0
                    self.warnings.clear("processing")  # the fault cleared: say so at once
            except InputError as exc:
                self.stats.count("bad_input")
                self.warnings.raise_("bad_input", str(exc))
                self.get_logger().warning(f"frame skipped: {exc}", throttle_duration_sec=5.0)
            except Exception as exc:  # a model or publish failure must not kill the worker
                if stop.is_set():
                    return
                self.stats.count("failed")
                self._failures_in_a_row += 1
                self.warnings.raise_("processing", f"{self._failures_in_a_row} frame(s) failed in a row: {type(exc).__name__}: {exc}",
                                     ERROR, sticky=True)
                self.get_logger().error(f"frame failed: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)
                if self._failures_in_a_row >= FAILURES_BEFORE_FALLBACK:
                    self._fall_back(f"{type(exc).__name__}: {exc}")
            finally:
                if self._running is running:  # not a newer worker's (an abandoned frame can end after reactivation)
                    self._running = None

    def _wanted(self) -> set[str]:
        """The outputs somebody subscribes to."""
        return {name for name, publisher in self.publishers_by_output.items() if publisher.get_subscription_count() > 0}

    def _process(self, msg: Any, received: float, timer: StageTimer, stop: threading.Event) -> None:
        if self._first_frame_s is None:
            self._first_frame_s = received
        with timer.stage("convert_in"):
            if self._compressed_input:
                msg = cdr.read_compressed_image(msg)
                rgb = convert.compressed_to_rgb(msg)
            else:
                msg = cdr.read_image(msg)
                rgb = convert.image_to_rgb(msg)
        found = self._camera_for(msg.header, rgb, timer)
        pipeline = self.pipeline
        if found is None or pipeline is None:
            return
        rgb, camera, info = found
        self._check_stamp(stamp_ns(msg.header.stamp), pipeline)
        want = self._wanted()
        if not want:
            return  # nobody listens: don't burn the CPU/GPU
        config = self.config
        reference = None
        if config.scale_mode == "sparse":
            with timer.stage("convert_reference"):
                reference = self._reference_for(msg.header, camera)
        stamp = msg.header.stamp  # the input's header, as an rclpy Header (depth/camera_info is built as a message)
        header = Header(stamp=Time(sec=stamp.sec, nanosec=stamp.nanosec), frame_id=msg.header.frame_id)
        messages = OutputMessages(header, info, camera, config, want)  # the outputs are computed straight into them
        result = pipeline.process(
            rgb,
            camera,
            confidence="confidence" in want,
            points="points" in want,
            colorized="colorized" in want,
            timer=timer,
            reference_depth_m=reference,
            out=messages,
        )
        self._report_scale(result.scale)
        self._report_model_output(result)
        if stop.is_set():
            return  # stopped (deactivated, shutting down) while this frame was computed

        def send(outputs: set[str]) -> Callable[[], None]:
            def publish() -> None:
                for name, serialized in messages.serialized(result, outputs).items():
                    self._senders[name].publish(serialized)  # CDR, published from its buffer
            return publish

        with timer.stage("publish"):
            # the cloud (the largest, computed in its message) goes out on another thread while depth/image is
            # serialized and the others go out on this one: publish() spends its time in the middleware's copy,
            # with the GIL released
            together([send(group) for group in ({"points"}, set(OUTPUTS) - {"points"}) if group & want])
        now_ns = self.get_clock().now().nanoseconds
        self.stats.frame_done((now_ns - stamp_ns(header.stamp)) / 1e6, (time.monotonic() - received) * 1e3, timer.ms)

    # ----------------------------------------------------------------- diagnostics and shutdown
    def diagnostic_info(self) -> dict[str, Any]:
        est = self.estimator
        return {
            "model": est.name if est else "none",
            "model_output": est.output.describe() if est else "none",
            "backend": f"{est.backend}/{est.device}" if est else "none",
            "input_topic": self.sub_image.topic_name,
            "camera_info_source": self._camera_source,
            "output_resolution": self.config.output_resolution,
            "depth_encoding": self.config.depth_encoding,
            "scale_mode": self.config.scale_mode,
            **self._scale_info(),
        }

    def _scale_info(self) -> dict[str, str]:
        state = self._scale_state
        if state is None:
            return {}
        return {"scale": f"{state.scale:.6g}", "scale_shift": f"{state.shift:.6g}", "scale_source": state.source,
                "scale_fit_quality": f"{state.quality:.3f}", "scale_ok": str(state.ok).lower(),
                "scale_frames_held": str(state.frames_held), "scale_fits_rejected": str(state.rejected)}

    def running_frame(self) -> str:
        """'stage S for N s' of the frame being computed, '' when none is."""
        running = self._running
        if running is None:
            return ""
        return f"stage {running[1].current or 'start'} for {time.monotonic() - running[0]:.0f} s"

    def _check_stall(self, stats: dict[str, Any]) -> None:
        """A frame running far longer than usual (or a first frame running ``STALL_MIN_S``) is a WARN naming its stage."""
        running = self._running
        if running is None:
            return
        busy_s = time.monotonic() - running[0]
        usual_s = stats["frame_time_p95_ms"] / 1000.0 if stats["processed"] else 0.0
        if busy_s > max(STALL_MIN_S, STALL_FACTOR * usual_s):
            usual = f"over {STALL_FACTOR:g} × the usual {usual_s:.1f} s" if stats["processed"] else "no frame finished yet"
            self.warnings.raise_("worker", f"one frame has been in {self.running_frame()} ({usual}; "
                                           f"{stats['received']} received, {stats['processed']} processed): the model is far "
                                           "slower than expected on this device, or its runtime hangs")

    def publish_diagnostics(self) -> None:
        info = self.diagnostic_info()
        stats = self.stats.snapshot()
        self._check_stall(stats)
        level, message, pairs = build_status(stats, info, self.warnings.active())
        status = DiagnosticStatus(
            level=bytes([level]),
            name=f"{self.get_fully_qualified_name()}: depth",
            message=message,
            hardware_id=info["model"],
            values=[KeyValue(key=k, value=v) for k, v in pairs],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.pub_diagnostics.publish(array)

    def close(self, timeout_s: float = WORKER_JOIN_S) -> bool:
        """Stop the worker (idempotent) and wait up to ``timeout_s`` for its frame to finish. Returns False when a
        frame is still being computed (a forward pass cannot be interrupted): it publishes nothing more."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        worker = self._worker
        if worker is not None and worker.is_alive() and threading.current_thread() is not worker:
            worker.join(timeout=timeout_s)
            return not worker.is_alive()
        return True


class DepthNode(_DepthNodeBody, Node):
    """The depth node: configured and active from construction. Raises :class:`ParameterError` for a bad parameter
    and :class:`ModelLoadError` when no backend loads the model (``main`` then exits non-zero, so launch's respawn
    and supervisors see it). ``close()`` stops the worker; call it before ``destroy_node()``."""

    def __init__(self, node_name: str = "depth_node", origins: dict[str, str] | None = None, **kwargs: Any) -> None:
        """``origins``: where each parameter override came from (``ros.arguments``), for the error line."""
        super().__init__(node_name, **kwargs)
        self._declare(origins)
        try:
            self._configure()
        except ModelLoadError as exc:
            self.get_logger().error(f"cannot load the model: {exc}")
            self.destroy_node()
            raise
        self._activate()


class DepthLifecycleNode(_DepthNodeBody, LifecycleNode):
    """The depth node as a managed node (REP 2002 / Nav2 lifecycle managers): parameters at construction, then
    ``configure`` loads the model (a model that cannot load fails the transition with the reason: the node stays
    unconfigured), ``activate`` starts receiving and publishing, ``deactivate`` stops both and the worker, ``cleanup``
    releases the model, ``shutdown`` all of it."""

    def __init__(self, node_name: str = "depth_node", origins: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._declare(origins)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except ModelLoadError as exc:
            self.get_logger().error(f"configure failed: cannot load the model: {exc}")
            self._cleanup()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"configured: {self._model_summary()}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._activate()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self.get_logger().info("deactivated: not receiving or publishing")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        self.get_logger().info("cleaned up: model released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS


def main(args: list[str] | None = None) -> int:
    """``ros2 run depth_node depth_node [--lifecycle] [--ros-args ...]``: the node, or with ``--lifecycle`` the
    managed node (unconfigured until a lifecycle manager configures it). Exit code 0 on SIGINT/SIGTERM, 2 for a bad
    parameter or command line, 1 when the plain node cannot load its model (so respawn and supervisors act)."""

    args = sys.argv if args is None else args
    ours = args[1: args.index("--ros-args")] if "--ros-args" in args else args[1:]
    lifecycle = "--lifecycle" in ours
    try:
        origins = arguments.check(args)  # before rcl reads them: one line naming the value, not rcl's traceback
    except ParameterError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    keep_frame_buffers_mapped()
    # Fast DDS sends from its own thread, not inside publish(): at 640x480 with every output the worker spent
    # ~11 ms of each frame in publish(), ~4.5 ms this way (docs/benchmarks.md). A value the user set wins.
    os.environ.setdefault("RMW_FASTRTPS_PUBLICATION_MODE", "ASYNCHRONOUS")
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as exc:  # RCLError: a command line rcl reads differently from us
        print(f"ERROR: ROS could not read the command line: {' '.join(str(exc).split(', at ')[0].split())}", file=sys.stderr)
        return 2
    stop = stop_signals.catch()  # already caught from the process's first line by the entry points
    node = None
    executor = SingleThreadedExecutor()
    spin = threading.Thread(target=executor.spin, name="depth_node_executor", daemon=True)
    finished = True
    try:
        try:
            node = (DepthLifecycleNode if lifecycle else DepthNode)(origins=origins)
        except ConfigError as exc:
            print(f"ERROR: {exc}", file=sys.stderr)
            return 2
        except ModelLoadError as exc:
            print(f"ERROR: cannot load the model: {exc}", file=sys.stderr)
            return 1
        executor.add_node(node)
        spin.start()
        while not stop.wait(0.5) and rclpy.ok():
            pass
        return 0
    finally:
        # Order matters (an executor thread still running at exit aborts the process):
        # worker → executor → its thread → node → context.
        if node is not None:
            finished = node.close()
            if not finished:
                node.get_logger().warning(f"stopping without waiting for the frame being computed ({node.running_frame()})")
        executor.shutdown()
        if spin.is_alive():
            spin.join(timeout=10.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        if not finished:
            # A forward pass is still running in the runtime's threads: finalizing the interpreter now would abort
            # the process ("terminate called without an active exception", rc -6). ROS is shut down, DDS segments
            # are released: leave without finalizing.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
