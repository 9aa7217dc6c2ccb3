"""RayEngine: the local engine's generate(request, on_progress, cancel) contract, run on Ray Serve replicas.

The front end (Gradio, REST, CLI) keeps its own Engine for what is not model work (forms, plugin lists, upload
screening); Studio sends only generate() here. The seed is fixed before a request leaves, so the one retry after
a replica died (kill -9, a lost node) gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import signal
import threading
from collections import Counter

import ray
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, RequestCancelledError

from t2i.generation.engine import Engine
from t2i.generation.progress import GenerationCancelled, ProgressCallback, ProgressEvent
from t2i.plugins import PluginManager
from t2i.request import MAX_SEED, GenerationRequest, GenerationResult, RequestError
from t2i.ray.deployment import EngineReplica, Finished, Refused, Started
from t2i.settings import Settings, parse_replicas

APP_NAME = "t2i"
CANCEL_POLL_S = 0.1  # how often a waiting request looks at its Stop flag (Serve's sync stream has no timeout)
log = logging.getLogger(__name__)


def deployment_options(settings: Settings) -> dict:
    """Serve options from the settings: replicas (fixed or autoscaled), resources per replica, queue bounds."""
    low, high = parse_replicas(settings.ray_replicas)
    scaling = ({"num_replicas": low} if low == high else
               {"autoscaling_config": {"min_replicas": low, "max_replicas": high,
                                       "target_ongoing_requests": settings.ray_max_ongoing}})
    return {**scaling, "max_ongoing_requests": settings.ray_max_ongoing,
            "max_queued_requests": settings.ray_max_queued,
            "ray_actor_options": {"num_cpus": settings.ray_replica_cpus, "num_gpus": settings.ray_replica_gpus}}


def routing_id(model: str, adapters: list[str]) -> str:
    """The multiplexed model id: the model and its adapters (named by content hash), in any order, e.g.
    `embedded|lora_ab12...+lora_cd34...`."""
    return f"{model}|{'+'.join(sorted(adapters))}"


def request_routing_id(request: GenerationRequest, settings: Settings, plugins: PluginManager) -> str:
    """The multiplexed id of a request: its model and its LoRAs' content hashes (from units and prompt tags)."""
    lora = plugins.plugins.get("lora")
    model = request.model or settings.default_model
    if lora is None or not isinstance(request.prompt, str) or not isinstance(request.plugin_units, dict):
        return routing_id(model, [])
    try:
        units = list(request.plugin_units.get("lora") or []) + lora.units_from_prompt(request.prompt)[1]
        return routing_id(model, [lora.library.resolve(unit["name"]).adapter_name for unit in units])
    except (RequestError, TypeError, KeyError):  # the replica's engine refuses it, with its own message
        return routing_id(model, [])


def _exit_normally(signum, frame) -> None:
    """SIGTERM's handler while this engine holds the cluster: a normal exit with status 0, so atexit's
    ray.shutdown stops the replicas and the cluster this process started."""
    raise SystemExit(0)


class RayEngine:
    """Runs generations on a Serve application's replicas (`t2i`), deploying it (and a local cluster) if needed."""

    def __init__(self, settings: Settings, engine: Engine, app_name: str = APP_NAME):
        self.settings = settings
        self.engine = engine  # the front end's: reads LoRA hashes for routing, runs no model
        self.connected = not ray.is_initialized()  # this engine joins (or starts) the cluster, and leaves it
        self.started_cluster = self.connected and not settings.ray_address
        # signals can be handled on the main thread only; elsewhere SIGTERM stays as Ray leaves it
        self.owns_sigterm = self.connected and threading.current_thread() is threading.main_thread()
        self._sigterm_before = signal.getsignal(signal.SIGTERM) if self.owns_sigterm else None
        if self.connected:
            # empty address: a one-machine cluster of this process ("local" never joins a stale one in /tmp/ray)
            ray.init(address=settings.ray_address or "local", namespace=APP_NAME, include_dashboard=False,
                     log_to_driver=False)
        if self.owns_sigterm:
            # ray.init routes SIGTERM through abseil's failure signal handler, which arms a 3 s abort (SIGALRM: the
            # app exited 134) before Ray's own handler drains and stops the local node, which takes longer
            signal.signal(signal.SIGTERM, _exit_normally)
        serve.start(proxy_location="Disabled")  # handles only: no HTTP proxy on the cluster's interfaces
        self.app_name = app_name  # another name deploys a second set of replicas beside (bench/ray_serving.py)
        self.handle = serve.run(EngineReplica.options(**deployment_options(settings)).bind(settings),
                                name=app_name, route_prefix=None)
        # what the front end should send at once: every replica's share (more wait in the front end's own queue)
        self.concurrency = parse_replicas(settings.ray_replicas)[1] * settings.ray_max_ongoing
        self.served: Counter[str] = Counter()  # replica id -> requests it finished
        self.retries = 0  # requests sent again because their replica died
        self.running: dict[int, Started] = {}  # thread id -> the Started record of its request, while it runs
        self._counting = threading.Lock()

    def generate(self, request: GenerationRequest, on_progress: ProgressCallback | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult:
        """Run `request` on a replica, passing its progress on; retried once on another replica if its replica died.

        Raises the replica's RequestError with its message, or GenerationCancelled once `cancel` is set.
        """
        if isinstance(request.seed, int) and request.seed == -1:  # others are the replica's to refuse
            request = dataclasses.replace(request, seed=secrets.randbelow(MAX_SEED + 1))
        model_id = request_routing_id(request, self.settings, self.engine.plugins)
        cancel = cancel or threading.Event()
        try:
            return self._run(request, model_id, on_progress, cancel)
        except RayActorError as exc:
            log.warning("replica died during a request (%s); retrying it once", type(exc).__name__)
            with self._counting:
                self.retries += 1
            return self._run(request, model_id, on_progress, cancel)

    def _run(self, request: GenerationRequest, model_id: str, on_progress: ProgressCallback | None,
             cancel: threading.Event) -> GenerationResult:
        """One attempt: stream the replica's messages, cancelling its run when `cancel` is set."""
        stream = self.handle.options(stream=True, multiplexed_model_id=model_id).generate.remote(request)
        done = threading.Event()
        threading.Thread(target=self._cancel_on_stop, args=(stream, cancel, done), daemon=True).start()
        answered = False  # the replica finished, refused or failed: nothing left to cancel
        try:
            for message in stream:
                if isinstance(message, Started):
                    self.running[threading.get_ident()] = message
                elif isinstance(message, ProgressEvent):
                    if on_progress is not None:
                        on_progress(message)
                elif isinstance(message, Refused):
                    answered = True
                    raise message.error  # the engine's own RequestError (e.g. PromptRefused), message and all
                elif isinstance(message, Finished):
                    answered = True
                    with self._counting:
                        self.served[message.replica] += 1
                    return message.result
            raise GenerationCancelled("generation cancelled")  # the replica's engine stopped at a step
        except RequestCancelledError:
            answered = True
            raise GenerationCancelled("generation cancelled") from None
        except BackPressureError:  # dropped before reaching a replica
            answered = True
            raise RequestError("the server is busy (every replica's queue is full); try again shortly") from None
        except RayActorError:  # its replica is gone (the caller retries)
            answered = True
            raise
        finally:
            self.running.pop(threading.get_ident(), None)
            done.set()
            if not answered:  # e.g. on_progress raised (a client gone): the replica stops instead of running on
                stream.cancel()  # (cancelling a stream that already failed would raise its error again)

    @staticmethod
    def _cancel_on_stop(stream, cancel: threading.Event, done: threading.Event) -> None:
        while not done.is_set():
            if cancel.wait(CANCEL_POLL_S):
                if not done.is_set():
                    stream.cancel()
                return

    def close(self) -> None:
        """Remove the Serve application; stop the cluster if this engine started it, leave one it joined."""
        serve.delete(self.app_name)
        if self.started_cluster:
            serve.shutdown()
        if self.connected:
            ray.shutdown()
        if self.owns_sigterm:  # as before ray.init (a handler not set from Python: the default)
            signal.signal(signal.SIGTERM, self._sigterm_before or signal.SIG_DFL)
